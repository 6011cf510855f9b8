"""One spelling per provider: the OTel ``gen_ai.provider.name`` values.

Older OTel names (``gen_ai.system``), OpenLLMetry's ``GenAISystem`` and
OpenInference's ``llm.provider`` / ``llm.system`` spell the same providers
differently; the price book and every query want one spelling. When no
attribute names the provider, the host called (``server.address``) often does.
"""
from __future__ import annotations

RENAMES = {
    # deprecated gen_ai.system values (semantic-conventions model/gen-ai/deprecated)
    "az.ai.openai": "azure.ai.openai",
    "az.ai.inference": "azure.ai.inference",
    "vertex_ai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    # OpenInference llm.provider / llm.system values
    "azure": "azure.ai.openai",
    "aws": "aws.bedrock",
    "google": "gcp.gen_ai",
    "vertexai": "gcp.vertex_ai",
    "mistralai": "mistral_ai",
    "xai": "x_ai",
    "moonshot": "moonshot_ai",
    "together": "together_ai",
    # other common spellings
    "bedrock": "aws.bedrock",
    "mistral": "mistral_ai",
}

# Exact hosts and host suffixes of the public APIs.
HOSTS = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "generativelanguage.googleapis.com": "gcp.gemini",
    "api.mistral.ai": "mistral_ai",
    "api.groq.com": "groq",
    "api.x.ai": "x_ai",
    "api.deepseek.com": "deepseek",
    "api.cohere.com": "cohere",
    "api.cohere.ai": "cohere",
    "api.perplexity.ai": "perplexity",
    "api.together.xyz": "together_ai",
    "api.fireworks.ai": "fireworks",
    "openrouter.ai": "openrouter",
    "api.moonshot.ai": "moonshot_ai",
}
HOST_SUFFIXES = (
    (".openai.azure.com", "azure.ai.openai"),
    (".services.ai.azure.com", "azure.ai.inference"),
    (".models.ai.azure.com", "azure.ai.inference"),
    ("aiplatform.googleapis.com", "gcp.vertex_ai"),
    (".amazonaws.com", "aws.bedrock"),  # bedrock-runtime.<region>.amazonaws.com
)


def normalize_provider(value: str) -> str:
    """Lower-case and rename to the OTel spelling; unknown values pass through."""
    lowered = value.strip().lower()
    return RENAMES.get(lowered, lowered)


def provider_from_host(host: str):
    """Provider of a well-known API host, or None."""
    host = host.strip().lower()
    found = HOSTS.get(host)
    if found is not None:
        return found
    for suffix, provider in HOST_SUFFIXES:
        if host.endswith(suffix) and (suffix != ".amazonaws.com" or host.startswith("bedrock")):
            return provider
    return None


def provider_from_attributes(attributes: dict):
    """Provider of the host a span called: ``server.address`` (``net.peer.name``), or
    OpenLLMetry's ``gen_ai.openai.api_base`` URL."""
    for key in ("server.address", "net.peer.name"):
        host = attributes.get(key)
        if type(host) is str and host:
            return provider_from_host(host)
    base = attributes.get("gen_ai.openai.api_base")
    if type(base) is str and "//" in base:
        return provider_from_host(base.split("//", 1)[1].split("/", 1)[0].split(":", 1)[0])
    return None
