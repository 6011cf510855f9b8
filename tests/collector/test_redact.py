"""Redaction of captured content: real-looking prompts in, placeholders out, look-alikes left alone."""
from __future__ import annotations

import json
import pickle

import pytest

from collector.redact import RedactionRules, Redactor, check_patterns, luhn_valid
from collector.workers import NormalizerPool
from inferledger.config import ConfigError
from tests.collector.builders import records, settings, span
from tests.conftest import make_config

CHAT = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 40}
REDACT = Redactor(RedactionRules())


@pytest.mark.parametrize("text, expected", [
    ("Hi, I'm Jane (jane.doe+billing@mail.example.co.uk), please update my card.",
     "Hi, I'm Jane ([EMAIL]), please update my card."),
    ("Visa 4111 1111 1111 1111, Mastercard 5555-5555-5555-4444, Amex 378282246310005.",
     "Visa [CARD_NUMBER], Mastercard [CARD_NUMBER], Amex [CARD_NUMBER]."),
    ("Call me on +1 (415) 555-2671 or +44 20 7946 0958, from abroad 0049 30 12345678.",
     "Call me on [PHONE_NUMBER] or [PHONE_NUMBER], from abroad [PHONE_NUMBER]."),
])
def test_personal_data_becomes_typed_placeholders(text, expected):
    assert REDACT.redact(text) == expected


@pytest.mark.parametrize("text", [
    "Order 4111111111111112 shipped on 2026-05-01.",          # 16 digits, fails the Luhn check
    "Order #7000 0000 0000 0000 is ready",                   # passes Luhn but no card network starts with 7
    "span started at 1718000000000000123 ns",                # a nanosecond timestamp
    "Invoice 2026-0042, total 1 234,56 EUR, ref 12345678",
    "Temperature +21.5 C, version +1.2, score 4111",
    "user@localhost is not an address with a domain",
])
def test_look_alikes_stay(text):
    assert REDACT.redact(text) == text


def test_luhn_by_hand():
    # 79927398713: the textbook example; doubling every second digit from the right sums to 70
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")


def test_custom_patterns_and_rule_selection():
    rules = RedactionRules(builtin=("email",), patterns=(("employee_id", r"\bEMP-\d{6}\b"), ("iban", r"\bDE\d{20}\b")))
    redactor = Redactor(rules)
    text = "EMP-004211 (ops@acme.example) paid to DE89370400440532013000 from +49 30 1234567"
    assert redactor.redact(text) == "[EMPLOYEE_ID] ([EMAIL]) paid to [IBAN] from +49 30 1234567"


def test_bad_rules_are_refused_clearly():
    with pytest.raises(ValueError, match="not a valid regular expression"):
        check_patterns({"broken": "(unclosed"})
    with pytest.raises(ValueError, match="must be letters, digits and _"):
        RedactionRules(patterns=(("my pattern", "x"),))
    with pytest.raises(ValueError, match="unknown redaction rule"):
        RedactionRules(builtin=("ssn",))


def test_configuration_checks_patterns(tmp_path):
    with pytest.raises(ConfigError, match="privacy.redact_patterns: .*'broken' is not a valid regular expression"):
        make_config(tmp_path, privacy__redact_patterns={"broken": "[a-"})
    config = make_config(tmp_path, privacy__redact_patterns={"ticket": r"TCK-\d+"}, privacy__redact=["email"])
    assert config.privacy.redact == ["email"] and config.privacy.redact_patterns == {"ticket": r"TCK-\d+"}


CONTENT = {
    "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content":
        "I'm Bob Stone, bob.stone@example.org, card 4111-1111-1111-1111, order 4111111111111112, +1 415 555 2671"}]}]),
    "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [{"type": "text", "content":
        "Thanks Bob, I've emailed bob.stone@example.org."}]}]),
    "llm.input_messages.0.message.content": "reach me at +44 20 7946 0958",
    "gen_ai.tool.call.arguments": ["refund 5555 5555 5555 4444", "note"],
    "app.ticket": "bob.stone@example.org",  # not a content attribute: untouched (and not captured content)
}


def test_normalize_redacts_content_before_the_record_is_built():
    [row] = records(span({**CHAT, **CONTENT}), capture_content=True)
    attributes = json.loads(row["attributes"])
    messages = json.loads(attributes["gen_ai.input.messages"])  # still valid JSON
    assert messages[0]["parts"][0]["content"] == (
        "I'm Bob Stone, [EMAIL], card [CARD_NUMBER], order 4111111111111112, [PHONE_NUMBER]")
    assert json.loads(attributes["gen_ai.output.messages"])[0]["parts"][0]["content"] == "Thanks Bob, I've emailed [EMAIL]."
    assert attributes["llm.input_messages.0.message.content"] == "reach me at [PHONE_NUMBER]"
    assert attributes["gen_ai.tool.call.arguments"] == ["refund [CARD_NUMBER]", "note"]
    assert attributes["app.ticket"] == "bob.stone@example.org"
    assert "4111-1111-1111-1111" not in json.dumps(row, default=str) and "bob.stone@example.org" not in row["attributes"].replace(
        '"app.ticket":"bob.stone@example.org"', "")


def test_without_capture_content_is_dropped_and_nothing_is_compiled():
    [row] = records(span({**CHAT, **CONTENT}))
    assert "gen_ai.input.messages" not in (row["attributes"] or "")
    assert settings().redactor is None and settings(capture_content=True).redactor is not None
    assert settings(capture_content=True, redaction=RedactionRules(builtin=())).redactor is None


def test_settings_with_rules_reach_worker_processes():
    """Worker processes rebuild NormalizeSettings from its init fields: the rules must pickle."""
    rules = RedactionRules(patterns=(("ticket", r"TCK-\d+"),))
    assert pickle.loads(pickle.dumps(rules)) == rules
    pool = NormalizerPool(settings(capture_content=True, redaction=rules), workers=1)
    try:
        from tests.collector.builders import request
        body = request(span({**CHAT, "gen_ai.prompt": "about TCK-991 from ann@example.com"})).SerializeToString()
        batch = pool.submit(body, "application/x-protobuf").result(timeout=60)
    finally:
        pool.shutdown()
    attributes = json.loads(batch.table("inferences").to_pylist()[0]["attributes"])
    assert attributes["gen_ai.prompt"] == "about [TICKET] from [EMAIL]"
