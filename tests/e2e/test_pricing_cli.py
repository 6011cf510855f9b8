"""Costs through the whole pipeline: landing prices each record; `prices check`; `reprice` after a price change.

Expected costs are worked out by hand from genai-prices' gpt-4o list price
(USD per million tokens: input 2.50, cache read 1.25, output 10.00) and from
the negotiated price in the user file written below (input 2.00, cache read
1.00, output 8.00).
"""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone

import httpx
import pytest

from inferledger.app import RunningServer
from tests.conftest import make_config, wait_for_rows
from tests.otlp_builders import export_request, genai_span
from warehouse.catalog import query

DAY_NS = int(datetime(2026, 11, 20, 12, tzinfo=timezone.utc).timestamp() * 1e9)
PRICE_FILE = """
[[model]]
id = "acme/gpt-4o-negotiated"
provider = "openai"
models = ["gpt-4o"]
effective_from = 2026-11-01
input_mtok = 2.00
cache_read_mtok = 1.00
output_mtok = 8.00
"""


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inferledger.cli", *args], capture_output=True, text=True,
                          timeout=120, env={"INFERLEDGER_SUBJECT_KEY": "22" * 32, "PATH": "/usr/bin:/bin"})


def test_costs_land_priced_then_reprice_writes_a_new_version(tmp_path):
    data_dir = tmp_path / "data"
    spans = [
        # 10,000 input of which 4,000 cache reads, 1,000 output:
        # (6,000 x 2.50 + 4,000 x 1.25 + 1,000 x 10.00) / 1e6 = 0.015 + 0.005 + 0.010 = 0.030
        genai_span(model="gpt-4o", input_tokens=10_000, output_tokens=1_000, start_ns=DAY_NS,
                   **{"gen_ai.usage.cache_read.input_tokens": 4_000}),
        # a model no price list knows: unpriced, NULL cost, never 0
        genai_span(model="acme-secret-llm", input_tokens=500, output_tokens=50, start_ns=DAY_NS + 1000,
                   **{"gen_ai.provider.name": "acme-ml"}),
        # the same unknown model with a cost reported on the span: kept as reported
        genai_span(model="acme-secret-llm", input_tokens=500, output_tokens=50, start_ns=DAY_NS + 2000,
                   **{"gen_ai.provider.name": "acme-ml", "llm.cost.total": 0.0123}),
    ]
    with RunningServer(make_config(data_dir)) as server:
        reply = httpx.post(server.http_url + "/v1/traces", content=export_request(spans).SerializeToString(),
                           headers={"Content-Type": "application/x-protobuf"})
        assert reply.status_code == 200
        rows = wait_for_rows(data_dir, "select * from inferences order by start_time", 3)
    gpt, unknown, reported = rows
    assert gpt["cost_usd"] == pytest.approx(0.030) and gpt["cost_source"] == "computed"
    assert gpt["price_ref"] == "openai/gpt-4o@1970-01-01" and gpt["cost_version"] == 0
    assert unknown["cost_usd"] is None and unknown["cost_source"] == "unpriced"
    assert reported["cost_usd"] == pytest.approx(0.0123) and reported["cost_source"] == "reported"

    check = cli("prices", "check", "--data-dir", str(data_dir))
    assert check.returncode == 1, check.stderr
    assert "acme-secret-llm" in check.stdout and "(unpriced)" in check.stdout
    assert "openai/gpt-4o" in check.stdout

    config = tmp_path / "inferledger.toml"
    config.write_text(f'data_dir = "{data_dir}"\n[pricing]\nprice_file = "{tmp_path / "prices.toml"}"\n')
    (tmp_path / "prices.toml").write_text(PRICE_FILE)
    dry = cli("reprice", "--config", str(config), "--from", "2026-11-20", "--to", "2026-11-20", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert query(data_dir, "select count(*) as n from repricings").to_pylist() == [{"n": 0}]

    done = cli("reprice", "--config", str(config), "--from", "2026-11-20", "--to", "2026-11-20",
               "--reason", "negotiated discount")
    assert done.returncode == 0, done.stderr
    assert "cost version 1" in " ".join(done.stderr.split())
    # (6,000 x 2.00 + 4,000 x 1.00 + 1,000 x 8.00) / 1e6 = 0.012 + 0.004 + 0.008 = 0.024
    after = query(data_dir, "select * from inferences where request_model = 'gpt-4o'").to_pylist()[0]
    assert after["cost_usd"] == pytest.approx(0.024) and after["cost_version"] == 1
    assert after["price_ref"] == "acme/gpt-4o-negotiated@2026-11-01"
    versions = query(data_dir, "select cost_version, cost_usd from cost_versions where span_id = ?",
                     [gpt["span_id"]]).to_pylist()
    assert [round(v["cost_usd"], 6) for v in versions] == [0.024]
    log = query(data_dir, "select reason, cost_version from repricings").to_pylist()
    assert log == [{"reason": "negotiated discount", "cost_version": 1}]
    raw = query(data_dir, "select cost_usd from inferences_raw where request_model = 'gpt-4o'").to_pylist()
    assert raw[0]["cost_usd"] == pytest.approx(0.030)  # the landed record is untouched


def test_serve_allocates_closed_pool_hours_in_the_background(tmp_path):
    """An hourly GPU pool: one closed hour of 8 GPUs x $2.85 = $22.80 shared by compute time
    (100 ms and 300 ms of inference: $5.70 and $17.10), written by the scheduled capacity job."""
    from inferledger.scheduler import run_scheduled
    from warehouse.jobs.capacity import CAPACITY_JOB

    prices = tmp_path / "prices.toml"
    prices.write_text('[[pool]]\nname = "gpu"\neffective_from = 2020-01-01\ngpus = 8\ngpu_hour_usd = 2.85\n')
    hour = int(datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0).timestamp() * 1e9) - 3600 * 10**9
    spans = [genai_span(model="fraud-gbm", start_ns=hour + 60 * 10**9, duration_ns=100_000_000,
                        **{"inferledger.compute.pool": "gpu", "inferledger.model.name": "fraud-gbm"}),
             genai_span(model="fraud-gbm", start_ns=hour + 120 * 10**9, duration_ns=300_000_000,
                        **{"inferledger.compute.pool": "gpu", "inferledger.model.name": "fraud-gbm"})]
    config = make_config(tmp_path / "data", pricing__price_file=prices, jobs__enabled=True,
                         jobs__disabled=["rollups", "rollups_daily", "retries", "variance", "drift", "anomalies"])
    with RunningServer(config) as server:
        httpx.post(server.http_url + "/v1/traces", content=export_request(spans).SerializeToString(),
                   headers={"Content-Type": "application/x-protobuf"})
        server.pipeline.storage.flush(timeout=30)
        job = server.pipeline.scheduler.get_job("capacity")
        assert job is not None and str(job.trigger.fields[6]) == "5"  # minute 5 of every hour
        record = run_scheduled(CAPACITY_JOB, job.args[1])  # what the scheduler runs, now rather than at :05
        assert record.status == "ok"
        costs = query(server.data_dir, "select cost_usd, cost_source from inferences order by duration_ms").to_pylist()
    assert [(round(c["cost_usd"], 6), c["cost_source"]) for c in costs] == [(5.7, "capacity"), (17.1, "capacity")]


def test_reprice_while_the_server_runs_keeps_one_manifest_chain(tmp_path):
    from warehouse.manifest import verify_chain

    data_dir = tmp_path / "data"
    (tmp_path / "prices.toml").write_text(PRICE_FILE)
    config = tmp_path / "inferledger.toml"
    config.write_text(f'data_dir = "{data_dir}"\n[pricing]\nprice_file = "{tmp_path / "prices.toml"}"\n')
    with RunningServer(make_config(data_dir)) as server:
        post = lambda spans: httpx.post(server.http_url + "/v1/traces",  # noqa: E731
                                        content=export_request(spans).SerializeToString(),
                                        headers={"Content-Type": "application/x-protobuf"})
        post([genai_span(model="gpt-4o", input_tokens=1_000_000, output_tokens=0, start_ns=DAY_NS)])
        server.pipeline.storage.flush(timeout=30)
        done = cli("reprice", "--config", str(config), "--from", "2026-11-20", "--to", "2026-11-20")
        assert done.returncode == 0, done.stderr
        post([genai_span(model="gpt-4o", input_tokens=10, output_tokens=0, start_ns=DAY_NS + 5)])
        server.pipeline.storage.flush(timeout=30)
        # 1M input tokens: $2.50 at the list price, $2.00 negotiated (the server landed it at list price)
        costs = query(data_dir, "select cost_usd, cost_version from inferences order by input_tokens desc")
        assert costs.to_pylist()[0] == {"cost_usd": pytest.approx(2.0), "cost_version": 1}
    assert [p for p in verify_chain(data_dir) if p.kind in ("broken_link", "reordered", "entry_missing")] == []
