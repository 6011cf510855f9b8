"""Regenerate the captured OTLP/JSON payloads in this folder from the real instrumentations.

Run from the repository root:  .venv/bin/python tests/data/payloads/capture.py [instrumentation ...]

Each file is ``<instrumentation>_<scenario>.json``: the ExportTraceServiceRequest
an OTLP exporter would have sent after the scenario (see ``tests/instrumented.py``),
in OTLP/JSON with hex ids. Ids and timestamps change on every run; attribute
values do not. Installed instrumentations only: a missing one is skipped and
reported, so regenerating never invents a payload.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # the repository root, so `tests.*` imports work

from tests.instrumented import INSTRUMENTATIONS, SCENARIOS, capture_once, to_otlp_json  # noqa: E402


def payload_path(instrumentation: str, scenario: str) -> Path:
    return HERE / f"{instrumentation}_{scenario}.json"


def capture_all(instrumentations: list[str]) -> list[Path]:
    """Capture every scenario each instrumentation supports; return the files written."""
    written = []
    for instrumentation in instrumentations:
        for scenario in SCENARIOS.values():
            if instrumentation not in scenario.supported_by:
                continue
            result = capture_once(instrumentation, scenario.name)
            path = payload_path(instrumentation, scenario.name)
            path.write_text(to_otlp_json(result.request))
            written.append(path)
    return written


def main(argv: list[str]) -> int:
    wanted = argv or list(INSTRUMENTATIONS)
    unknown = [name for name in wanted if name not in INSTRUMENTATIONS]
    if unknown:
        print(f"unknown instrumentation(s): {', '.join(unknown)}; known: {', '.join(INSTRUMENTATIONS)}")
        return 2
    available = []
    for name in wanted:
        try:
            __import__(INSTRUMENTATIONS[name][0])
            available.append(name)
        except ImportError as exc:
            print(f"skipped {name}: {exc}")
    for path in capture_all(available):
        print(f"wrote {path.relative_to(HERE.parents[2])}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
