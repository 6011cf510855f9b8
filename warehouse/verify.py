"""``inferledger verify``: the chain, the files and the signed heads, checked together.

``verify_chain`` (manifest.py) recomputes every entry hash and link and hashes the
files; a ``HeadChecker`` (signing.py) rides along the same pass to check every
signed head: those inside the chain, the copies in ``manifest/heads.jsonl`` and
any heads file an auditor kept outside the system.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from warehouse.manifest import Problem, VerifyStats, verify_chain
from warehouse.signing import HEADS_FILE, HeadChecker, key_id, read_heads


@dataclass
class VerifyReport:
    problems: list[Problem]
    stats: VerifyStats
    heads_checked: int = 0
    trusted_keys: list[str] = field(default_factory=list)  # key ids; empty = the keys embedded in the heads

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(data_dir: str | Path, date_from: date | None = None, date_to: date | None = None,
           public_keys: list[Ed25519PublicKey] | None = None, heads_files: list[Path] | None = None) -> VerifyReport:
    """Everything ``verify`` checks; ``public_keys`` pins the keys heads must be signed with.

    Raises ``FileNotFoundError``/``OSError`` for a heads file that cannot be read.
    """
    data_dir = Path(data_dir)
    external, problems = [], []
    sources = [(Path(path), str(path)) for path in heads_files or []]
    if (data_dir / HEADS_FILE).exists():
        sources.insert(0, (data_dir / HEADS_FILE, HEADS_FILE.as_posix()))
    for path, origin in sources:
        heads, unreadable = read_heads(path)
        external += [(origin, head) for head in heads]
        problems += unreadable
    trusted = {key_id(key): key for key in public_keys} if public_keys else None
    checker = HeadChecker(external, trusted)
    stats = VerifyStats()
    problems += verify_chain(data_dir, date_from, date_to, stats, [checker])
    return VerifyReport(problems, stats, checker.checked, sorted(trusted or {}))
