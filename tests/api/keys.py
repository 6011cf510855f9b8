"""API keys of every kind in a data directory, and a keyed server to use them against."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from inferledger.app import RunningServer
from inferledger.auth import create_key, revoke_key
from tests.conftest import make_config


@dataclass(frozen=True)
class Keys:
    ingest: str
    auditor: str
    admin: str
    acme_auditor: str   # auditor scoped to tenant acme
    acme_ingest: str    # ingest scoped to tenant acme
    revoked: str        # was an admin key
    ids: dict           # name -> key id

    def by_role(self) -> dict[str, str | None]:
        """Every kind of caller of the role matrix: a header value per row, None = no key."""
        return {"ingest": self.ingest, "auditor": self.auditor, "admin": self.admin, "none": None,
                "bad": "ilk_000000000000_not-a-real-secret", "revoked": self.revoked}


def make_keys(data_dir: Path) -> Keys:
    made = {}
    for name, role, tenant in (("ingest", "ingest", None), ("auditor", "auditor", None), ("admin", "admin", None),
                               ("acme_auditor", "auditor", "acme"), ("acme_ingest", "ingest", "acme"),
                               ("revoked", "admin", None)):
        record, plain = create_key(data_dir, role, f"test {name}", tenant)
        made[name] = (record.id, plain)
    revoke_key(data_dir, made["revoked"][0])
    return Keys(**{name: plain for name, (_, plain) in made.items()}, ids={n: i for n, (i, _) in made.items()})


@contextmanager
def keyed_server(data_dir: Path, **overrides):
    """A running server that requires API keys, with one key of every kind."""
    keys = make_keys(data_dir)
    with RunningServer(make_config(data_dir, auth__mode="required", **overrides)) as server:
        yield server, keys


def client(server, key: str | None, header: str = "authorization") -> httpx.Client:
    """An HTTP client for the server's API sending ``key`` (Bearer by default, or as X-API-Key)."""
    headers = {}
    if key is not None:
        headers = {"Authorization": f"Bearer {key}"} if header == "authorization" else {"X-API-Key": key}
    return httpx.Client(base_url=server.http_url, headers=headers, timeout=30)
