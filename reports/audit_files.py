"""``inferledger report audit``: the files an auditor receives, written into one directory.

* ``decisions.parquet`` / ``decisions.csv``: the decision population in scope;
* ``report.html`` and ``report.pdf``: the same report, for reading and for filing;
* ``evidence.json``: the scope, tool version, every query with its parameters, the
  chain head and verification result, and the SHA-256 of each file above, so the
  package can be checked later without trusting the report's own text.

Files are written under temporary names and renamed, so a failed run never leaves
a report next to an export it does not describe.
"""
from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime
from pathlib import Path

from reports.audit import AuditReport, build_audit
from reports.config import ReportsConfig
from reports.decisions import INPUT_HASH_DOC, Scope, sample_doc
from reports.pdf import write_pdf
from reports.render import render

FILES = ("decisions.parquet", "decisions.csv", "report.html", "report.pdf", "evidence.json")


def audit_title(scope: Scope) -> str:
    return f"Compliance audit report: {scope.system or 'all systems'}, {scope.date_from} to {scope.date_to}"


def write_audit(data_dir: Path, scope: Scope, config: ReportsConfig, out_dir: Path, seed: int | None = None,
                now: datetime | None = None) -> AuditReport:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = {name: out_dir / f".{name}.tmp" for name in FILES}
    try:
        report = build_audit(data_dir, scope, config, seed, now,
                             export_to=(tmp["decisions.parquet"], tmp["decisions.csv"]))
        exported = {"parquet": "decisions.parquet", "csv": "decisions.csv", "rows": report.population_rows}
        documents = dict(title=audit_title(scope), input_hash_doc=INPUT_HASH_DOC, export=exported,
                         sample_doc=sample_doc(report.seed, report.sample_size))
        tmp["report.html"].write_text(render(config, "audit.html.j2", report=report, **documents), encoding="utf-8")
        write_pdf(report, tmp["report.pdf"], symbol=config.currency_symbol, **documents)
        evidence = _evidence(report, {name: _sha256(tmp[name]) for name in FILES[:-1]})
        tmp["evidence.json"].write_text(json.dumps(evidence, indent=2, default=str) + "\n", encoding="utf-8")
        for name in FILES:
            os.replace(tmp[name], out_dir / name)
    finally:
        for path in tmp.values():
            path.unlink(missing_ok=True)
    return report


def _evidence(report: AuditReport, hashes: dict[str, str]) -> dict:
    chain = report.chain
    return {
        "report": "compliance audit",
        "tool_version": report.tool_version,
        "generated_at": report.generated_at.isoformat(),
        "scope": {"date_from": report.scope.date_from.isoformat(), "date_to": report.scope.date_to.isoformat(),
                  "start": report.scope.start.isoformat(), "end_exclusive": report.scope.end.isoformat(),
                  "system": report.scope.system},
        "population": {"records": report.totals.get("records"), "decisions": report.totals.get("decisions"),
                       "exported_rows": report.population_rows},
        "sample": {"seed": report.seed, "size": len(report.sample),
                   "records": [[row["trace_id"], row["span_id"]] for row in report.sample]},
        "completeness": {"reconciled": report.reconciled, "empty_days": [d.isoformat() for d in report.empty_days],
                         "empty_hours": report.empty_hours_total, "sequence_findings": report.sequence},
        "chain": {"intact": chain.intact, "head_seq": chain.head_seq, "head_hash": chain.head_hash,
                  "entries_checked": chain.entries, "files_hashed": chain.files_checked,
                  "bytes_hashed": chain.bytes_hashed, "signed_heads_checked": chain.signed_heads_checked,
                  "problems": chain.problems},
        "queries": [query.as_dict() for query in report.queries],
        "files_sha256": hashes,
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
