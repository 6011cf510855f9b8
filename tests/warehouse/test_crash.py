"""kill -9 under load: every acknowledged span is in the catalog exactly once afterwards.

The test starts this file as a writer process (``python test_crash.py <data_dir> <run>``)
several times on one data directory. Each writer recovers what the previous one
left, then appends from four threads (some appends resend spans already stored,
as retrying exporters do) and prints a line per append *after* its future
resolved, that is after the fsync. The test kills it with SIGKILL at a random
moment: in a WAL write, a landing, a manifest append or a compaction. At the end
one clean start/stop lands what is left, and the catalog, the manifest and the
files must agree.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from warehouse.catalog import query  # noqa: E402
from warehouse.compaction import CompactionSettings  # noqa: E402
from warehouse.manifest import manifest_path, read_entries, verify_chain  # noqa: E402
from warehouse.record import to_batch  # noqa: E402
from warehouse.storage import Storage, StorageSettings  # noqa: E402

ROWS = 50
THREADS = 4
RUNS = 5
DAY = datetime(2026, 5, 1, 23, 59, 58, tzinfo=timezone.utc)  # batches straddle two date partitions
# Everything happens often, so a random kill lands in the middle of something.
BUSY = StorageSettings(seal_interval_s=0.05, visibility_target_s=2.0, compaction=CompactionSettings(
    interval_s=0.1, min_files=2, grace_s=0.2, idle_s=0.3))


def span_ids(run: int, thread: int, seq: int) -> list[str]:
    return [f"{run:02x}{thread:02x}{seq:06x}{k:06x}" for k in range(ROWS)]


def batch(run: int, thread: int, seq: int):
    now = datetime.now(timezone.utc)
    return to_batch([{"trace_id": "0" * 16 + span_id, "span_id": span_id, "service_name": f"svc-{k % 3}",
                      "start_time": DAY + timedelta(milliseconds=seq * 37 + k), "ingest_time": now}
                     for k, span_id in enumerate(span_ids(run, thread, seq))])


# --------------------------------------------------------------------------- the writer process

def write_until_killed(data_dir: Path, run: int) -> None:
    storage = Storage(data_dir, BUSY)
    storage.start()
    print_lock = threading.Lock()

    def acknowledge(key: tuple[int, int, int]) -> None:
        with print_lock:
            sys.stdout.write("%d %d %d\n" % key)
            sys.stdout.flush()

    def work(thread: int) -> None:
        rng = random.Random(run * 100 + thread)
        resend = [(run - 1, thread, seq) for seq in range(3)] if run else []
        sent, seq = [], 0
        deadline = time.monotonic() + 30  # the test kills us long before
        while time.monotonic() < deadline:
            if resend:
                key = resend.pop()
            elif sent and rng.random() < 0.2:
                key = rng.choice(sent)  # an exporter retrying spans that were already stored
            else:
                key, seq = (run, thread, seq), seq + 1
                sent.append(key)
            storage.append("inferences", batch(*key)).result()
            acknowledge(key)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    storage.stop()


# --------------------------------------------------------------------------- the test

def run_and_kill(data_dir: Path, run: int, rng: random.Random) -> set[tuple[int, int, int]]:
    """Start a writer, let it work under load, SIGKILL it; return what it acknowledged."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen([sys.executable, __file__, str(data_dir), str(run)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout))
    reader.start()
    deadline = time.monotonic() + 20
    while not lines and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    assert lines, f"writer {run} acknowledged nothing: {process.stderr.read().decode()[-2000:]}"
    time.sleep(rng.uniform(0.1, 1.0))
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    reader.join()
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    complete = [line for line in lines if line.endswith(b"\n")]  # a kill can cut the last line
    return {tuple(int(part) for part in line.split()) for line in complete}


def test_every_acknowledged_span_survives_kill_9_exactly_once(tmp_path):
    rng = random.Random()
    acknowledged: set[tuple[int, int, int]] = set()
    for run in range(RUNS):
        acknowledged |= run_and_kill(tmp_path, run, rng)

    with Storage(tmp_path, BUSY):  # recovery, then stop() lands everything left
        pass

    expected = {span for key in acknowledged for span in span_ids(*key)}
    stored = query(tmp_path, "SELECT span_id, count(*) AS copies FROM inferences GROUP BY span_id")
    copies = dict(zip(stored["span_id"].to_pylist(), stored["copies"].to_pylist()))
    assert expected - set(copies) == set(), "acknowledged spans were lost"
    assert set(copies.values()) == {1}, "a span appears more than once"
    assert verify_chain(tmp_path) == []
    assert not any((tmp_path / "wal").rglob("*.wal")) and not any((tmp_path / "quarantine").iterdir())
    kinds = {entry["kind"] for entry in read_entries(manifest_path(tmp_path))}
    assert kinds <= {"segment", "compaction"} and "segment" in kinds


if __name__ == "__main__":
    write_until_killed(Path(sys.argv[1]), int(sys.argv[2]))
