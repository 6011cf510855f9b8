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
                             "where request_model is distinct from 'signal-ranker-7b' and review_outcome is null")
    assert priced.to_pylist() == [{"unpriced": 0, "marked": 0}]  # the GPU pool is allocated, the LLMs are listed
    ranker = query(data_dir, "select distinct cost_source, cost_usd from inferences "
                             "where request_model = 'signal-ranker-7b'").to_pylist()
    assert ranker == [{"cost_source": "unpriced", "cost_usd": None}]  # nobody priced it: NULL, never $0
