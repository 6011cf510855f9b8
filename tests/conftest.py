"""Shared fixtures: a real collector on free loopback ports in a temporary data directory."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from inferledger.app import RunningServer
from inferledger.config import load_config


def make_config(data_dir: Path, **overrides):
    """A configuration for tests: loopback, free ports, fast sealing, no config file from the cwd."""
    values = dict(
        data_dir=data_dir,
        server__host="127.0.0.1",
        server__http_port=0,
        server__grpc_port=0,
        storage__seal_interval_s=0.2,
        storage__min_free_bytes=0,
        ingest__workers=0,
        jobs__enabled=False,
    )
    values.update(overrides)
    return load_config(None, environ={"INFERLEDGER_SUBJECT_KEY": "00" * 32}, **values)


@pytest.fixture
def collector(tmp_path):
    """A running collector; stops itself at the end of the test."""
    with RunningServer(make_config(tmp_path / "data")) as server:
        yield server


def wait_for_rows(data_dir: Path, sql: str, expected: int, timeout: float = 10.0):
    """Poll the warehouse until ``sql`` returns ``expected`` rows; return them as dicts."""
    from warehouse.catalog import query

    deadline = time.monotonic() + timeout
    rows = []
    while time.monotonic() < deadline:
        rows = query(Path(data_dir), sql).to_pylist()
        if len(rows) >= expected:
            return rows
        time.sleep(0.1)
    raise AssertionError(f"expected {expected} rows from {sql!r} within {timeout}s, got {len(rows)}: {rows[:3]}")
