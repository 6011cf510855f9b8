"""`inferledger demo --no-serve`: the README's first command runs the pipeline end to end and exits."""
from __future__ import annotations

import os
import subprocess
import sys

from warehouse.catalog import query


def test_demo_plays_traffic_prices_it_and_exits(tmp_path):
    data_dir = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "inferledger.cli", "demo", "--data-dir", str(data_dir), "--days", "3",
         "--no-serve", "--http-port", "0", "--grpc-port", "0"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    # (240 + 160 + 80) requests/day x 3 days, and the support spike triples its first day: + 2 x 160
    assert "sent 1,760 requests" in result.stderr
    rows = query(data_dir, "select service_name, count(*) as n, count(cost_usd) as priced "
                           "from inferences group by 1 order by 1").to_pylist()
    by_service = {r["service_name"]: r for r in rows}
    assert by_service["fraud-screening"]["n"] >= 720  # every screening, plus LLM reviews of borderline cases
    assert by_service["trading-signals"]["n"] >= 240 and by_service["support-assistant"]["n"] >= 480
    priced = query(data_dir, "select count(*) filter (where cost_usd is null) as unpriced, "
                             "count(*) filter (where cost_source = 'unpriced') as marked from inferences "
                             "where request_model is distinct from 'signal-ranker-7b'")
    assert priced.to_pylist() == [{"unpriced": 0, "marked": 0}]  # GPU pool allocated, LLMs listed, reviewer time
    ranker = query(data_dir, "select distinct cost_source, cost_usd from inferences "
                             "where request_model = 'signal-ranker-7b'").to_pylist()
    assert ranker == [{"cost_source": "unpriced", "cost_usd": None}]  # nobody priced it: NULL, never $0

    # every job ran, alerts and the weekly email are in the mailbox, the audit report is written
    from warehouse.jobs.registry import all_jobs

    runs = query(data_dir, "select job, status from job_runs").to_pylist()
    assert {r["job"] for r in runs} == {job.name for job in all_jobs()} and {r["status"] for r in runs} == {"ok"}
    reviews = query(data_dir, "select distinct cost_source from inferences where review_outcome is not null")
    assert reviews.to_pylist() == [{"cost_source": "human_review"}]
    subjects = [line for mail in (data_dir / "mailbox").glob("*.eml")
                for line in mail.read_text().splitlines() if line.startswith("Subject:")]
    assert any("AI inference $" in line for line in subjects), subjects
    assert any("FIRING" in line for line in subjects), subjects  # the month overshoots its budgets
    audits = list((data_dir / "reports").glob("audit-*/report.pdf"))
    assert len(audits) == 1 and audits[0].read_bytes().startswith(b"%PDF")
    assert "weekly email" in result.stderr and "/dashboard" in result.stderr  # the summary names what to open
