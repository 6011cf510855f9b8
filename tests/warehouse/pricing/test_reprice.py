"""Repricing on real Parquet and DuckDB: a price change mid-period, new cost versions, the diff and the log.

Records are landed through the real write-ahead log and lander with the pricing
hook, as the server does, so the raw segments, their manifest entries and the
landing-time costs are the real ones.
"""
from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.warehouse.pricing.records import PRICES, at, land, record
from warehouse.catalog import connect
from warehouse.manifest import manifest_path, read_entries, verify_chain
from warehouse.pricing.book import load_book
from warehouse.pricing.reprice import allocate_capacity, reprice

DAYS = [date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4)]
CHAT_V1 = """
[[model]]
id = "acme/chat"
provider = "openai"
models = ["gpt-4o"]
effective_from = 2026-01-01
input_mtok = 2.00
output_mtok = 8.00
"""
# The price drops from 2026-03-03, and is entered late: records of the 3rd and 4th were priced at 2.00/8.00.
CHAT_V2 = CHAT_V1 + """
[[model]]
id = "acme/chat"
provider = "openai"
models = ["gpt-4o"]
effective_from = 2026-03-03
input_mtok = 1.00
output_mtok = 4.00
"""
CHAT_V3 = CHAT_V2 + """
[[model]]
id = "acme/chat"
provider = "openai"
models = ["gpt-4o"]
effective_from = 2026-03-04
input_mtok = 0.50
output_mtok = 2.00
"""


def book(tmp_path: Path, text: str, name: str):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return load_book(path)


@pytest.fixture
def warehouse(tmp_path):
    """Four days, each with two gpt-4o calls (1000 in, 100 out) and one unknown model, landed with v1 prices.

    v1: 1000*2 + 100*8 = 2800 µ$ per call, 5600 µ$ a day. The unknown model is unpriced.
    """
    data_dir = tmp_path / "data"
    rows = []
    for day in DAYS:
        rows += [record(provider="openai", response_model="gpt-4o", input_tokens=1000, output_tokens=100,
                        start_time=at(day, hour)) for hour in (9, 15)]
        rows.append(record(provider="mystery", response_model="mystery-7b", input_tokens=10, output_tokens=1,
                           start_time=at(day, 10)))
    land(data_dir, rows, book(tmp_path, CHAT_V1, "v1"))
    return data_dir


def raw_digests(data_dir: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (data_dir / "parquet" / "inferences").rglob("*.parquet")}


def inferences(data_dir: Path, sql: str) -> list[tuple]:
    """Query the catalog's inferences view, which shows each record's latest cost version."""
    con = connect(data_dir)
    try:
        return con.sql(sql).fetchall()
    finally:
        con.close()


def test_dry_run_reports_the_diff_and_writes_nothing(tmp_path, warehouse):
    manifest_before = manifest_path(warehouse).read_bytes()
    result = reprice(warehouse, book(tmp_path, CHAT_V2, "v2"), DAYS[0], DAYS[-1], dry_run=True, actor="ana",
                     reason="price cut")
    assert result.cost_version is None
    assert not (warehouse / "parquet" / "cost_versions").exists()
    assert manifest_path(warehouse).read_bytes() == manifest_before
    gpt = [r for r in result.diff.to_pylist() if r["model"] == "gpt-4o"]
    # v2 from the 3rd: 1000*1 + 100*4 = 1400 µ$ per call, 2800 µ$ a day, instead of 5600 µ$.
    assert [(r["day"], r["requests"], r["changed"]) for r in gpt] == [
        (DAYS[0], 2, 0), (DAYS[1], 2, 0), (DAYS[2], 2, 2), (DAYS[3], 2, 2)]
    assert [r["before_usd"] for r in gpt] == pytest.approx([0.0056] * 4, rel=1e-12)
    assert [r["after_usd"] for r in gpt] == pytest.approx([0.0056, 0.0056, 0.0028, 0.0028], rel=1e-12)
    assert [r["delta_usd"] for r in gpt] == pytest.approx([0, 0, -0.0028, -0.0028], rel=1e-12, abs=1e-15)
    mystery = [r for r in result.diff.to_pylist() if r["model"] == "mystery-7b"]
    assert [(r["before_usd"], r["after_usd"], r["unpriced_before"], r["unpriced_after"]) for r in mystery] == [
        (0, 0, 1, 1)] * 4
    assert (result.records, result.changed, result.unpriced_before, result.unpriced_after) == (12, 4, 4, 4)
    assert (result.total_before_usd, result.total_after_usd) == pytest.approx((0.0224, 0.0168), rel=1e-12)


def test_reprice_writes_a_logged_version_and_leaves_raw_records_alone(tmp_path, warehouse):
    raw_before = raw_digests(warehouse)
    result = reprice(warehouse, book(tmp_path, CHAT_V2, "v2"), DAYS[0], DAYS[-1], actor="ana", reason="price cut")

    assert result.cost_version == 1
    # Only days whose costs changed get a file; the 1st and 2nd keep their landing costs (version 0).
    assert result.files == ["parquet/cost_versions/date=2026-03-03/cost-v000001-2026-03-03.parquet",
                            "parquet/cost_versions/date=2026-03-04/cost-v000001-2026-03-04.parquet"]
    assert raw_digests(warehouse) == raw_before
    assert verify_chain(warehouse) == []
    kinds = [(e["kind"], e["file"]) for e in read_entries(manifest_path(warehouse))][-3:]
    assert [k for k, _ in kinds] == ["cost_version", "cost_version", "repricing"]

    rows = inferences(warehouse, """SELECT start_time::DATE, cost_usd, cost_source, price_ref, cost_version
                                    FROM inferences WHERE response_model = 'gpt-4o' ORDER BY start_time""")
    assert [(d, s, ref, v) for d, _, s, ref, v in rows] == [
        (DAYS[0], "computed", "acme/chat@2026-01-01", 0), (DAYS[0], "computed", "acme/chat@2026-01-01", 0),
        (DAYS[1], "computed", "acme/chat@2026-01-01", 0), (DAYS[1], "computed", "acme/chat@2026-01-01", 0),
        (DAYS[2], "computed", "acme/chat@2026-03-03", 1), (DAYS[2], "computed", "acme/chat@2026-03-03", 1),
        (DAYS[3], "computed", "acme/chat@2026-03-03", 1), (DAYS[3], "computed", "acme/chat@2026-03-03", 1)]
    assert [c for _, c, _, _, _ in rows] == pytest.approx([0.0028] * 4 + [0.0014] * 4, rel=1e-12)

    [log] = inferences(warehouse, """SELECT cost_version, kind, actor, reason, date_from, date_to, records, changed,
                                            total_before_usd, total_after_usd, unpriced_before, unpriced_after,
                                            files, book_sources FROM repricings""")
    assert log[:8] == (1, "reprice", "ana", "price cut", DAYS[0], DAYS[-1], 12, 4)
    assert log[8:10] == pytest.approx((0.0224, 0.0168), rel=1e-12)
    assert log[10:13] == (4, 4, result.files)
    assert log[13][0].startswith("genai-prices@") and log[13][1].startswith(str(tmp_path / "v2.toml") + " sha256:")


def test_a_later_reprice_adds_a_version_and_earlier_ones_stay_queryable(tmp_path, warehouse):
    reprice(warehouse, book(tmp_path, CHAT_V2, "v2"), DAYS[0], DAYS[-1], actor="ana", reason="price cut")
    second = reprice(warehouse, book(tmp_path, CHAT_V3, "v3"), DAYS[0], DAYS[-1], actor="bo", reason="second cut")

    assert second.cost_version == 2
    assert second.files == ["parquet/cost_versions/date=2026-03-04/cost-v000002-2026-03-04.parquet"]
    # The 4th, before = version 1 (2800 µ$), after = v3 0.50/2.00: 1000*0.5 + 100*2 = 700 µ$ a call, 1400 µ$ a day.
    day4 = [r for r in second.diff.to_pylist() if r["model"] == "gpt-4o" and r["day"] == DAYS[3]][0]
    assert (day4["before_usd"], day4["after_usd"], day4["changed"]) == pytest.approx((0.0028, 0.0014, 2))

    latest = inferences(warehouse, """SELECT start_time::DATE, cost_version, sum(cost_usd) FROM inferences
                                      WHERE response_model = 'gpt-4o' GROUP BY ALL ORDER BY 1""")
    assert [(d, v) for d, v, _ in latest] == [(DAYS[0], 0), (DAYS[1], 0), (DAYS[2], 1), (DAYS[3], 2)]
    assert [s for _, _, s in latest] == pytest.approx([0.0056, 0.0056, 0.0028, 0.0014], rel=1e-12)
    history = inferences(warehouse, """SELECT v.cost_version, sum(v.cost_usd), min(v.price_ref) FROM cost_versions v
                                       JOIN inferences_raw r USING (trace_id, span_id)
                                       WHERE r.start_time::DATE = '2026-03-04' GROUP BY ALL ORDER BY 1""")
    assert [(v, ref) for v, _, ref in history] == [(1, "acme/chat@2026-03-03"), (2, "acme/chat@2026-03-04")]
    assert [s for _, s, _ in history] == pytest.approx([0.0028, 0.0014], rel=1e-12)
    assert verify_chain(warehouse) == []


def test_a_reprice_that_changes_nothing_is_logged_without_files(tmp_path, warehouse):
    result = reprice(warehouse, book(tmp_path, CHAT_V1, "v1-again"), DAYS[0], DAYS[-1], actor="ana",
                     reason="check")
    assert (result.cost_version, result.changed, result.files) == (1, 0, [])
    assert inferences(warehouse, "SELECT cost_version, changed, files FROM repricings") == [(1, 0, [])]
    assert inferences(warehouse, "SELECT DISTINCT cost_version FROM inferences") == [(0,)]


def test_files_of_a_run_that_died_before_its_log_row_are_ignored_then_removed(tmp_path, warehouse):
    stray = warehouse / "parquet" / "cost_versions" / "date=2026-03-01" / "cost-v000007-2026-03-01.parquet"
    stray.parent.mkdir(parents=True)
    ids = pq.read_table(next((warehouse / "parquet" / "inferences" / "date=2026-03-01").glob("*.parquet")),
                        columns=["trace_id", "span_id"])
    pq.write_table(ids.append_column("cost_version", pa.array([7] * ids.num_rows, pa.int64())), stray)
    # Not committed (no repricings row): invisible; the view keeps landing costs.
    assert inferences(warehouse, "SELECT DISTINCT cost_version FROM inferences") == [(0,)]
    result = reprice(warehouse, book(tmp_path, CHAT_V2, "v2"), DAYS[0], DAYS[-1], actor="ana", reason="price cut")
    assert not stray.exists()
    assert result.cost_version == 8  # numbers are never reused
    assert verify_chain(warehouse) == []


def test_capacity_allocation_is_a_version_of_pool_records_only(tmp_path):
    data_dir = tmp_path / "data"
    acme = load_book(PRICES / "acme.toml")
    # fraud-gpu: $22.80 an hour. 10:00-11:00 holds 30 s and 90 s of compute: 22.80 * 1/4 = 5.70, * 3/4 = 17.10.
    rows = [record(compute_pool="fraud-gpu", provider="self-hosted", response_model="fraud-xgb",
                   start_time=datetime(2026, 3, 1, 10, m, tzinfo=UTC), duration_ms=d)
            for m, d in ((5, 30_000.0), (40, 90_000.0))]
    rows.append(record(provider="openai", response_model="gpt-4o-mini", input_tokens=2000, output_tokens=500,
                       start_time=datetime(2026, 3, 1, 10, 30, tzinfo=UTC)))
    land(data_dir, rows, acme)
    assert inferences(data_dir, "SELECT count(*) FROM inferences WHERE cost_source = 'capacity' "
                                "AND cost_usd IS NULL") == [(2,)]  # the hour was open at landing

    result = allocate_capacity(data_dir, acme, DAYS[0], DAYS[0], closed_before=datetime(2026, 3, 2, tzinfo=UTC))
    assert (result.cost_version, result.records, result.changed) == (1, 2, 2)
    rows = inferences(data_dir, """SELECT response_model, cost_usd, cost_source, price_ref, cost_version
                                   FROM inferences ORDER BY start_time""")
    assert [(m, s, ref, v) for m, _, s, ref, v in rows] == [
        ("fraud-xgb", "capacity", "pool:fraud-gpu@2026-01-01", 1),
        ("gpt-4o-mini", "computed", "openai/gpt-4o-mini@1970-01-01", 0),
        ("fraud-xgb", "capacity", "pool:fraud-gpu@2026-01-01", 1)]
    assert [c for _, c, _, _, _ in rows] == pytest.approx([5.70, 0.0006, 17.10], rel=1e-12)
    assert inferences(data_dir, "SELECT kind, actor, reason FROM repricings") == [
        ("capacity", "scheduler", "capacity allocation")]
    assert verify_chain(data_dir) == []


def test_capacity_allocated_after_a_reprice_overrides_only_the_pool_records(tmp_path):
    data_dir = tmp_path / "data"
    pool = '[[pool]]\nname = "fraud-gpu"\neffective_from = 2026-01-01\ngpus = 8\ngpu_hour_usd = 2.85\n'
    v1, v2 = book(tmp_path, CHAT_V1 + pool, "pools-v1"), book(tmp_path, CHAT_V2 + pool, "pools-v2")
    rows = [record(compute_pool="fraud-gpu", provider="self-hosted", response_model="fraud-xgb",
                   start_time=datetime(2026, 3, 3, 10, 5, tzinfo=UTC), duration_ms=1000.0),
            record(provider="openai", response_model="gpt-4o", input_tokens=1000, output_tokens=100,
                   start_time=datetime(2026, 3, 3, 10, 6, tzinfo=UTC))]
    land(data_dir, rows, v1)
    # The price change is repriced while 10:00 is still open: the pool record stays pending (version 1)...
    first = reprice(data_dir, v2, DAYS[2], DAYS[2], actor="ana", reason="price cut",
                    closed_before=datetime(2026, 3, 3, 10, tzinfo=UTC))
    # ...then the hour closes and the scheduler allocates it (version 2, the pool record only).
    second = allocate_capacity(data_dir, v2, DAYS[2], DAYS[2], closed_before=datetime(2026, 3, 4, tzinfo=UTC))
    assert (first.cost_version, first.changed, second.cost_version, second.records) == (1, 1, 2, 1)
    got = inferences(data_dir, """SELECT response_model, cost_usd, cost_source, price_ref, cost_version
                                  FROM inferences ORDER BY start_time""")
    # The pool's $22.80 falls on its only record of the hour; gpt-4o at v2: 1000*1 + 100*4 = 1400 µ$.
    assert [(m, s, ref, v) for m, _, s, ref, v in got] == [
        ("fraud-xgb", "capacity", "pool:fraud-gpu@2026-01-01", 2), ("gpt-4o", "computed", "acme/chat@2026-03-03", 1)]
    assert [c for _, c, _, _, _ in got] == pytest.approx([22.80, 0.0014], rel=1e-12)
