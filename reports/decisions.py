"""The decision population of an audit: which records, which fields, the sample, the export.

In scope: every record of the ``inferences`` view (deduplicated, latest cost
version) whose ``start_time`` falls in the period (UTC days, both ends included),
of one service when ``--system`` is given. A *decision* is a record with a
``decision_label``.

``input_hash`` identifies what the model was given without storing it twice:

* ``content``: prompt content was captured (``ingest.capture_content``). The hash is
  SHA-256 (hex) of the UTF-8 text made of one line ``<key>=<value>`` per input
  content attribute, keys sorted, lines joined by ``\\n``, the value as minified
  JSON (``"hello"`` with its quotes). Input content attributes are those in
  ``INPUT_CONTENT_KEYS`` and keys starting with ``INPUT_CONTENT_PREFIXES``.
* ``attributes``: nothing was captured. SHA-256 of the stored ``attributes`` JSON
  text (the span's remaining attributes, e.g. a classifier's input features).
* NULL: the record has no attributes.

The sample is reproducible from the seed alone: records are ordered by
``sha256(<seed> || ':' || trace_id || span_id)`` (then by the ids), and the first
``n`` are taken. The same seed over the same data gives the same sample; anyone
can recompute it with any SHA-256 implementation.

The export (``decisions.parquet``, ``decisions.csv``) is the same population with
the same columns, grouped by day (not sorted: sorting millions of rows would cost
more than the rest of the report; sort by ``start_time`` when reading).
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta


# The input side of the content attributes the collector drops unless capture is on
# (collector/attributes.py CONTENT_KEYS and CONTENT_PREFIXES).
INPUT_CONTENT_KEYS = (
    "gen_ai.input.messages", "gen_ai.system_instructions", "gen_ai.tool.definitions", "gen_ai.prompt",
    "gen_ai.retrieval.query.text", "input.value", "llm.prompt_template.template",
    "llm.prompt_template.variables", "langfuse.observation.input", "langfuse.trace.input",
    "traceloop.entity.input", "traceloop.prompt.template", "traceloop.prompt.template_variables",
)
INPUT_CONTENT_PREFIXES = ("gen_ai.prompt.", "llm.prompts.", "llm.input_messages.", "llm.tools.",
                          "llm.request.functions.")


def _input_keys_sql() -> str:
    keys = ", ".join(f"'{key}'" for key in INPUT_CONTENT_KEYS)
    prefixes = "\n                  OR ".join(f"starts_with(k, '{prefix}')" for prefix in INPUT_CONTENT_PREFIXES)
    return (f"list_sort(list_filter(json_keys(attributes), lambda k:\n"
            f"                  k IN ({keys})\n                  OR {prefixes}))")


INPUT_KEYS_SQL = _input_keys_sql()  # computed once per record, in the scope CTE
# Parsing JSON costs about a microsecond a record: only attributes that mention a content namespace are parsed.
_NAMESPACES = sorted({key.split(".")[0] for key in INPUT_CONTENT_KEYS + INPUT_CONTENT_PREFIXES})
MAY_HAVE_CONTENT_SQL = " OR ".join(f"contains(attributes, '\"{namespace}.')" for namespace in _NAMESPACES)
INPUT_HASH_SQL = """CASE WHEN attributes IS NULL THEN NULL
            WHEN len(input_keys) > 0 THEN sha256(array_to_string(list_transform(input_keys,
                lambda k: k || '=' || json_extract(attributes, '$."' || k || '"')::VARCHAR), chr(10)))
            ELSE sha256(attributes) END"""
INPUT_HASH_BASIS_SQL = """CASE WHEN attributes IS NULL THEN NULL
            WHEN len(input_keys) > 0 THEN 'content' ELSE 'attributes' END"""

# Every field an auditor needs about one decision, in the order they are shown and exported.
DECISION_COLUMNS = [
    ("start_time", "start_time"), ("trace_id", "trace_id"), ("span_id", "span_id"),
    ("service_name", "service_name"),
    ("model", "coalesce(response_model, request_model)"), ("model_version", "model_version"),
    ("provider", "provider"),
    ("input_hash", INPUT_HASH_SQL), ("input_hash_basis", INPUT_HASH_BASIS_SQL),
    ("decision_label", "decision_label"), ("decision_score", "decision_score"),
    ("decision_reasons", "decision_reasons"), ("subject_id", "subject_id"),
    ("status", "status"),
    ("attempt", "attempt"), ("request_key", "request_key"),
    ("input_tokens", "input_tokens"), ("output_tokens", "output_tokens"),
    ("cost_usd", "cost_usd"), ("cost_source", "cost_source"), ("price_ref", "price_ref"),
]


@dataclass(frozen=True)
class Scope:
    """The period (UTC days, inclusive) and optionally one system (service name)."""

    date_from: date
    date_to: date
    system: str | None = None

    def __post_init__(self) -> None:
        if self.date_to < self.date_from:
            raise ValueError(f"the period ends ({self.date_to}) before it starts ({self.date_from})")

    @property
    def start(self) -> datetime:
        return datetime.combine(self.date_from, time(), UTC)

    @property
    def end(self) -> datetime:
        """Exclusive end: midnight after ``date_to``."""
        return datetime.combine(self.date_to + timedelta(days=1), time(), UTC)

    @property
    def days(self) -> list[date]:
        return [self.date_from + timedelta(days=i) for i in range((self.date_to - self.date_from).days + 1)]

    def where(self, decisions_only: bool = False) -> tuple[str, list]:
        """A WHERE clause (partition and row-group pruning first) and its parameters."""
        clauses = ["date BETWEEN ? AND ?", "start_time >= ?", "start_time < ?"]
        params: list = [self.date_from, self.date_to, self.start, self.end]
        if self.system is not None:
            clauses.append("service_name = ?")
            params.append(self.system)
        if decisions_only:
            clauses.append("decision_label IS NOT NULL")
        return " AND ".join(clauses), params


def population_select(scope: Scope, seed: int) -> tuple[str, list]:
    """Every record of the period (all systems), with the audit fields of the decisions among them.

    One pass serves the whole report (``reports.population``): ``in_population``
    marks the decisions in scope (exported and sampled), ``sample_key`` orders the
    sample, and every row counts towards the hourly aggregates, whose per-day
    totals are reconciled with the manifest for all systems. The input hash is
    computed for decisions only.
    """
    where, params = Scope(scope.date_from, scope.date_to).where()
    in_population = "decision_label IS NOT NULL" + (" AND service_name = ?" if scope.system else "")
    columns = ",\n       ".join(expr if expr == name else f"{expr} AS {name}" for name, expr in DECISION_COLUMNS)
    sql = (f"WITH in_scope AS (\n    SELECT *, {in_population} AS in_population,\n"
           f"           CASE WHEN decision_label IS NOT NULL AND ({MAY_HAVE_CONTENT_SQL})\n"
           f"                THEN {INPUT_KEYS_SQL} END AS input_keys\n"
           f"    FROM inferences\n    WHERE {where}\n)\n"
           f"SELECT {columns},\n       in_population, date_trunc('hour', start_time) AS hour,\n"
           f"       CASE WHEN in_population THEN sha256(? || ':' || trace_id || span_id) END AS sample_key\n"
           f"FROM in_scope")
    return sql, [*([scope.system] if scope.system else []), *params, str(seed)]


def csv_text(rows: list[dict]) -> str:
    """Small tables as CSV text (golden files)."""
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


INPUT_HASH_DOC = (
    "input_hash is SHA-256 (hex) of what the model was given. Basis 'content' (prompt content was captured): "
    "the UTF-8 text of one line '<attribute>=<minified JSON value>' per input content attribute "
    f"({', '.join(INPUT_CONTENT_KEYS[:4])}, ..., and keys starting with {', '.join(INPUT_CONTENT_PREFIXES[:3])}, ...), "
    "keys sorted, lines joined by a newline. Basis 'attributes' (no content captured): the stored attributes JSON "
    "text of the record (its remaining span attributes, e.g. a classifier's input features). Empty: the record "
    "has no attributes. The exact SQL is the input_hash expression of the first query in the appendix.")


def sample_doc(seed: int, size: int) -> str:
    return (f"The sample is the first {size} decisions in scope (all of them when there are fewer) ordered by "
            f"sha256('{seed}:' || trace_id || span_id) "
            "(hex, then by the ids: the sample_key of the first query in the appendix). Re-running the report "
            "with the same seed over the same data returns the same "
            "records; anyone can recompute the order with any SHA-256 implementation.")
