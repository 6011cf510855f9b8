"""The compliance audit report: figures against data.py, reproducible sample, input hashes, exports, evidence, PDF."""
from __future__ import annotations

import csv
import hashlib
import json
from datetime import UTC, date, datetime

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from inferledger.cli import app
from reports.audit_files import write_audit
from reports.audit_tables import key_tables
from reports.decisions import Scope, csv_text
from tests.reports.conftest import ARTIFACTS, check_golden, report_config
from tests.reports.data import AUDIT_FROM, AUDIT_TO, CONTENT_ATTRIBUTES, audit_rows
from warehouse.manifest import chain_head, manifest_path

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def audit(audit_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("audit-out")
    config = report_config(audit_dir)
    report = write_audit(audit_dir, Scope(AUDIT_FROM, AUDIT_TO), config.reports, out, seed=7, now=NOW)
    return report, out


def expected_sample(seed: int) -> list[tuple[str, str]]:
    decisions = [(r["trace_id"], r["span_id"]) for r in audit_rows() if r.get("decision_label")]
    return sorted(decisions, key=lambda ids: (hashlib.sha256(f"{seed}:{ids[0]}{ids[1]}".encode()).hexdigest(), ids))


def test_scope_totals_inventory_and_outcomes(audit):
    report, _ = audit
    assert (report.totals["records"], report.totals["decisions"], report.totals["systems"]) == (19, 16, 2)
    inventory = {(r["model"], r["model_version"]): r for r in report.inventory}
    v3, v4, chat = inventory["fraud-gbm", "v3"], inventory["fraud-gbm", "v4"], inventory["gpt-4o", "gpt-4o-2024-08-06"]
    assert (v3["records"], v3["first_seen"], v3["last_seen"]) == (
        10, datetime(2026, 11, 1, 9, tzinfo=UTC), datetime(2026, 11, 2, 12, tzinfo=UTC))
    assert (v4["records"], v4["first_seen"], v4["last_seen"]) == (
        6, datetime(2026, 11, 2, 11, tzinfo=UTC), datetime(2026, 11, 4, 14, tzinfo=UTC))
    assert v3["owner"] == v4["owner"] == "Risk analytics" and v4["purpose"] == "Card transaction fraud screening"
    assert chat["owner"] is None and chat["decisions"] == 0  # not in the configured inventory: flagged
    assert [(r["outcome"], r["decisions"]) for r in report.outcomes] == [("approve", 11), ("decline", 4), ("review", 1)]
    assert report.by_day.labels == ["approve", "decline", "review"]
    assert [(r["key"], r["total"]) for r in report.by_day.rows] == [
        ([date(2026, 11, 1)], 6), ([date(2026, 11, 2)], 6), ([date(2026, 11, 4)], 4)]


def test_completeness_reconciles_with_the_manifest_and_finds_the_gaps(audit, audit_dir):
    report, _ = audit
    days = {d.day: d for d in report.reconciliation}
    second = days[date(2026, 11, 2)]
    assert (second.landed, second.in_view, second.view_dedup) == (7, 6, 1)
    assert "1 duplicate receipt of a span already landed" in days[date(2026, 11, 2)].note
    assert (days[date(2026, 11, 4)].landed, days[date(2026, 11, 4)].in_view) == (7, 7)
    assert days[date(2026, 11, 3)].note == "no records"
    assert report.reconciled and all(d.residual == 0 for d in report.reconciliation)
    assert report.empty_days == [date(2026, 11, 3)]
    assert report.empty_hours[0] == "2026-11-01 00:00 to 2026-11-01 08:59 (9 h)"
    assert report.sequence == [] and report.quarantined == []
    head = chain_head(manifest_path(audit_dir))
    assert report.chain.intact and (report.chain.head_seq, report.chain.head_hash) == (head.seq, head.entry_hash)
    assert report.chain.files_checked == 4


def test_sample_is_reproducible_from_the_seed(audit, audit_dir):
    report, _ = audit
    assert [(r["trace_id"], r["span_id"]) for r in report.sample] == expected_sample(7)
    config = report_config(audit_dir).reports.model_copy(update={"audit_sample_size": 5})
    from reports.audit import build_audit

    again = build_audit(audit_dir, Scope(AUDIT_FROM, AUDIT_TO), config, seed=7)
    other = build_audit(audit_dir, Scope(AUDIT_FROM, AUDIT_TO), config, seed=8)
    assert [(r["trace_id"], r["span_id"]) for r in again.sample] == expected_sample(7)[:5]
    assert [(r["trace_id"], r["span_id"]) for r in other.sample] == expected_sample(8)[:5] != expected_sample(7)[:5]


def test_input_hash_of_captured_content_and_of_attributes(audit):
    report, _ = audit
    by_attributes = {r["trace_id"]: r for r in audit_rows()}
    content = [r for r in report.sample if r["input_hash_basis"] == "content"]
    assert len(content) == 1
    text = 'gen_ai.prompt.0.content="Is txn 42 fraud?"\ngen_ai.prompt.0.role="user"'
    assert content[0]["input_hash"] == hashlib.sha256(text.encode()).hexdigest()
    assert by_attributes[content[0]["trace_id"]]["attributes"] == CONTENT_ATTRIBUTES
    for row in report.sample:
        if row["input_hash_basis"] == "attributes":
            stored = by_attributes[row["trace_id"]]["attributes"]
            assert row["input_hash"] == hashlib.sha256(stored.encode()).hexdigest()


def test_exports_and_evidence(audit, audit_dir):
    report, out = audit
    assert sorted(p.name for p in out.iterdir()) == [
        "decisions.csv", "decisions.parquet", "evidence.json", "report.html", "report.pdf"]
    population = pq.read_table(out / "decisions.parquet")
    assert population.num_rows == report.population_rows == 16
    decisions = {(r["trace_id"], r["span_id"]) for r in audit_rows() if r.get("decision_label")}
    assert set(zip(population["trace_id"].to_pylist(), population["span_id"].to_pylist())) == decisions
    with open(out / "decisions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 16 and rows[0]["decision_reasons"] == "amount; velocity" and rows[0]["cost_usd"] == "0.05"
    assert list(rows[0]) == population.column_names and "in_population" not in rows[0]
    evidence = json.loads((out / "evidence.json").read_text())
    assert evidence["chain"]["head_hash"] == chain_head(manifest_path(audit_dir)).entry_hash
    assert evidence["tool_version"].startswith("inferledger ") and evidence["sample"]["seed"] == 7
    assert evidence["population"] == {"records": 19, "decisions": 16, "exported_rows": 16}
    for name, digest in evidence["files_sha256"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    purposes = [q["purpose"] for q in evidence["queries"]]
    assert purposes[0].startswith("every record of the period, one pass")
    assert purposes[1].startswith("hourly aggregates of every record")
    html = (out / "report.html").read_text()
    assert "Seed <strong>7</strong>" in html and evidence["chain"]["head_hash"] in html and "<script" not in html


def test_events_of_the_period(audit):
    report, _ = audit
    events = {section.view: section for section in report.events}
    assert events["drift"].total == 2 and [r["verdict"] for r in events["drift"].rows] == ["major"]
    assert events["alert_events"].rows[0]["rule"] == "drift-labels"
    for quiet in ("repricings", "erasures", "retention_actions"):  # none ran here: "none recorded"
        assert events[quiet].total == 0 and events[quiet].rows == []


def test_key_tables_match_golden(audit):
    report, _ = audit
    text = "\n".join(f"## {table.title}\n{csv_text(table.as_csv_rows())}" for table in key_tables(report))
    check_golden("audit_tables.txt", text)


def test_pdf_is_valid_and_every_page_renders(audit):
    pypdf = pytest.importorskip("pypdf")
    pdfium = pytest.importorskip("pypdfium2")
    report, out = audit
    reader = pypdf.PdfReader(out / "report.pdf")
    text = "\n".join(page.extract_text() for page in reader.pages)
    for expected in ("Compliance audit report", "Model inventory", "Risk analytics", "Every day reconciles",
                     report.chain.head_hash, "Seed 7", "Appendix"):
        assert expected in " ".join(text.split()), expected
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    document = pdfium.PdfDocument(str(out / "report.pdf"))
    assert len(document) == len(reader.pages) >= 3
    for index in range(len(document)):
        image = document[index].render(scale=1.5).to_pil().convert("L")
        image.save(ARTIFACTS / f"audit-report-page-{index + 1}.png")
        low, high = image.getextrema()
        assert low < 100 and high > 200, f"page {index + 1} rendered blank"


def test_one_system_only(audit_dir, tmp_path):
    config = report_config(audit_dir)
    report = write_audit(audit_dir, Scope(AUDIT_FROM, AUDIT_TO, "support"), config.reports, tmp_path, seed=1)
    assert (report.totals["records"], report.totals["decisions"], report.population_rows) == (3, 0, 0)
    assert [r["model"] for r in report.inventory] == ["gpt-4o"] and report.sample == []
    assert sum(d.in_view for d in report.reconciliation) == 19  # the manifest knows no systems: all of them
    assert report.empty_days == [date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)]
    assert "No decisions in scope." in (tmp_path / "report.html").read_text()


def test_cli(audit_dir, tmp_path):
    runner = CliRunner()
    base = ["report", "audit", "--data-dir", str(audit_dir), "--out", str(tmp_path / "out")]
    done = runner.invoke(app, [*base, "--from", "2026-11-01", "--to", "2026-11-04", "--system", "fraud", "--seed", "3"])
    assert done.exit_code == 0, done.output
    said = " ".join(done.output.split())
    assert "16 records, 16 decisions exported, sample of 16 (seed 3), hash chain intact, reconciled" in said
    assert json.loads((tmp_path / "out" / "evidence.json").read_text())["scope"]["system"] == "fraud"
    backwards = runner.invoke(app, [*base, "--from", "2026-11-04", "--to", "2026-11-01"])
    assert backwards.exit_code == 2 and "the period ends (2026-11-01) before it starts (2026-11-04)" in backwards.output
    not_a_date = runner.invoke(app, [*base, "--from", "November", "--to", "2026-11-01"])
    assert not_a_date.exit_code == 2 and "--from 'November' is not a date: use YYYY-MM-DD" in not_a_date.output


def test_human_reviews_are_counted_by_the_model_version_they_review(tmp_path):
    """Three reviews: one of a v1 decision (override, 30 min, $24), one of a v2 decision in the same trace
    (15 min, $12), one of a v2 decision linked from another trace (override, 6 min, $4.80).
    v1: 1 review, 1 override (100%), 0.5 h, $24.00; v2: 2 reviews, 1 override (50%), 0.35 h, $16.80."""
    from datetime import date as day

    from reports.audit import build_audit
    from reports.config import ReportsConfig
    from reports.decisions import Scope
    from tests.warehouse.jobs.records import land_records, record, utc

    at = utc(2026, 11, 10, 9)
    v1 = record(at, trace_id="a" * 32, decision_label="decline", model_version="v1", request_model="fraud-gbm")
    v2 = record(at, trace_id="b" * 32, decision_label="decline", model_version="v2", request_model="fraud-gbm")
    v2_linked = record(at, trace_id="c" * 32, decision_label="review", model_version="v2", request_model="fraud-gbm")
    review = dict(review_outcome="approve", cost_source="human_review")
    land_records(tmp_path, [
        v1, v2, v2_linked,
        record(at, trace_id="a" * 32, review_override=True, review_duration_s=1800.0, cost_usd=24.0, **review),
        record(at, trace_id="b" * 32, review_override=False, review_duration_s=900.0, cost_usd=12.0, **review),
        record(at, trace_id="d" * 32, reviewed_span_id=v2_linked["span_id"], review_override=True,
               review_duration_s=360.0, cost_usd=4.8, **review),
    ])
    report = build_audit(tmp_path, Scope(day(2026, 11, 10), day(2026, 11, 10)), ReportsConfig())
    rows = [{k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()} for row in report.reviews]
    assert rows == [
        {"model": "fraud-gbm", "model_version": "v1", "reviews": 1, "overrides": 1, "override_rate": 1.0,
         "review_hours": 0.5, "review_cost_usd": 24.0},
        {"model": "fraud-gbm", "model_version": "v2", "reviews": 2, "overrides": 1, "override_rate": 0.5,
         "review_hours": 0.35, "review_cost_usd": 16.8},
    ]
