"""API keys, roles and the decision whether a request may proceed.

A key is ``ilk_<id>_<secret>``: the id finds the stored record without scanning,
the secret (32 random bytes) proves possession. Only SHA-256 of the whole key is
stored, in ``<data_dir>/keys/api_keys.json`` (mode 0600, replaced atomically). A
fast hash is enough because the secret is random and 256 bits long: there is no
dictionary to try, and a slow password hash would cost every OTLP export.

Roles: ``ingest`` sends spans, ``auditor`` reads decisions, reports and SQL,
``admin`` may do everything (erase, reprice, configuration, and what the other two
do). A key may be scoped to one tenant: it then writes and reads only that
tenant's records (docs/auditor-api.md).

Authentication is required whenever the server listens on anything but loopback
(``[auth] mode``); on loopback it may be off, and then a request without a key
acts as an unscoped admin while a request *with* a key is still held to it.
"""
from __future__ import annotations

import fcntl
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["ingest", "auditor", "admin"]
ROLES: tuple[str, ...] = ("ingest", "auditor", "admin")
KEY_PREFIX = "ilk_"
KEYS_FILE = Path("keys") / "api_keys.json"
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


class AuthConfig(BaseModel):
    """API keys and the auditor API: who may connect, and how much one auditor query may cost."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    mode: Literal["auto", "required", "off"] = Field(
        "auto", description="`required`: every request needs an API key; `off`: none is needed (refused at startup "
        "unless server.host is a loopback address); `auto`: required unless server.host is loopback.")
    sql_row_limit: int = Field(10_000, ge=1, description="Rows `POST /api/v1/sql` returns when the request names no limit.")
    sql_max_row_limit: int = Field(100_000, ge=1, description="Largest `limit` a `POST /api/v1/sql` request may ask for.")
    sql_time_limit_s: float = Field(
        30.0, gt=0, le=3600, description="An auditor SQL query running longer than this is interrupted (HTTP 408).")
    query_memory_limit: str = Field(
        "2GB", description="DuckDB memory limit of one auditor query or export; beyond it DuckDB spills to <data_dir>/tmp.")
    access_log_flush_interval_s: float = Field(
        5.0, gt=0, le=3600,
        description="Write buffered access log entries as a Parquet file (and manifest entry) this often.")
    access_log_flush_entries: int = Field(
        200, ge=1, description="Write the access log sooner once this many entries are buffered.")


@dataclass(frozen=True)
class ApiKey:
    """A stored key: everything but the secret, which exists only as ``key_sha256``."""

    id: str
    name: str
    role: str
    tenant: str | None
    created_at: str
    revoked: bool = False
    revoked_at: str | None = None
    key_sha256: str = ""


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the key's id and name, its role and tenant scope (None = all tenants)."""

    key_id: str
    name: str
    role: str
    tenant: str | None = None

    def has(self, role: str) -> bool:
        return self.role == "admin" or self.role == role


ANONYMOUS = Principal("anonymous", "no API key (authentication off on loopback)", "admin")


class AuthFailure(Exception):
    """A request may not proceed: ``status`` is 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status: int, message: str, principal: Principal | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.principal = principal  # known for a 403: the key is valid, its role is not enough


class AuthSetupError(Exception):
    """The server must not start with this authentication setup; the message says what to change."""


# --------------------------------------------------------------------------- the key file

def keys_path(data_dir: Path) -> Path:
    return Path(data_dir) / KEYS_FILE


def create_key(data_dir: Path, role: str, name: str, tenant: str | None = None) -> tuple[ApiKey, str]:
    """Create a key; returns the stored record and the plain key, which is shown once and never stored."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    if not name.strip():
        raise ValueError("a key needs a name (who or what uses it)")
    if tenant is not None and not tenant.strip():
        raise ValueError("--tenant must not be empty")
    if tenant is not None and role == "admin":
        raise ValueError("admin keys act on every tenant (erase, reprice); scope ingest or auditor keys instead")
    with _locked_keys(data_dir) as keys:
        key_id = _new_id(keys)
        plain = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        record = ApiKey(key_id, name.strip(), role, tenant, _now(), key_sha256=_digest(plain))
        keys.append(record)
    return record, plain


def list_keys(data_dir: Path) -> list[ApiKey]:
    return _read_keys(keys_path(data_dir))


def revoke_key(data_dir: Path, key_id: str) -> ApiKey:
    """Mark a key revoked (kept, so the access log's key ids stay explained); KeyError if unknown."""
    key_id = key_id.removeprefix(KEY_PREFIX)
    with _locked_keys(data_dir) as keys:
        for index, key in enumerate(keys):
            if key.id == key_id:
                if not key.revoked:
                    keys[index] = ApiKey(**{**asdict(key), "revoked": True, "revoked_at": _now()})
                return keys[index]
    raise KeyError(f"no API key with id {key_id!r}")


def authenticate(data_dir: Path, presented_key: str) -> Principal | None:
    """The principal of an active key; None for a malformed, unknown or revoked one."""
    found = KeyRing(data_dir).find(presented_key)
    return found.principal() if isinstance(found, _Match) else None


@dataclass(frozen=True)
class _Match:
    key: ApiKey

    def principal(self) -> Principal:
        return Principal(self.key.id, self.key.name, self.key.role, self.key.tenant)


class KeyRing:
    """Keys of a data dir, re-read whenever the file changes (keys created by the CLI work at once)."""

    def __init__(self, data_dir: Path):
        self.path = keys_path(data_dir)
        self._signature: tuple | None = None
        self._by_id: dict[str, ApiKey] = {}

    def active_count(self) -> int:
        self._refresh()
        return sum(not key.revoked for key in self._by_id.values())

    def find(self, presented: str) -> _Match | str:
        """A match, or the reason there is none (for the 401 message)."""
        key_id = _key_id(presented)
        if key_id is None:
            return f"malformed API key: inferledger keys look like {KEY_PREFIX}<id>_<secret>"
        self._refresh()
        key = self._by_id.get(key_id)
        if key is None or not hmac.compare_digest(key.key_sha256, _digest(presented)):
            return "unknown API key"
        if key.revoked:
            return f"API key {key.id} ({key.name}) was revoked at {key.revoked_at}"
        return _Match(key)

    def _refresh(self) -> None:
        try:
            stat = self.path.stat()
            signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            signature = None
        if signature != self._signature:
            self._by_id = {key.id: key for key in _read_keys(self.path)}
            self._signature = signature


def _key_id(presented: str) -> str | None:
    if not presented.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = presented[len(KEY_PREFIX):].partition("_")
    return key_id if sep and key_id and secret else None


def _digest(plain: str) -> str:
    return hashlib.sha256(plain.encode()).hexdigest()


def _new_id(keys: list[ApiKey]) -> str:
    taken = {key.id for key in keys}
    while (key_id := secrets.token_hex(6)) in taken:
        pass
    return key_id


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _read_keys(path: Path) -> list[ApiKey]:
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except ValueError as exc:
        raise AuthSetupError(f"{path} is not valid JSON: {exc}") from None
    return [ApiKey(**entry) for entry in document.get("keys", [])]


@contextmanager
def _locked_keys(data_dir: Path) -> Iterator[list[ApiKey]]:
    """Read-modify-write of the key file under an exclusive lock; written back atomically, mode 0600."""
    path = keys_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        keys = _read_keys(path)
        yield keys
        _write_private(path, json.dumps({"version": 1, "keys": [asdict(k) for k in keys]}, indent=2) + "\n")


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


# --------------------------------------------------------------------------- requests

def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` (names case-insensitive)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    scheme, _, credentials = lowered.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return lowered.get("x-api-key", "").strip() or None


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Gate:
    """Turns request headers into a ``Principal`` or an ``AuthFailure`` with a message that says why."""

    def __init__(self, data_dir: Path, required: bool):
        self.required = required
        self.keyring = KeyRing(data_dir)

    def principal(self, headers: Mapping[str, str]) -> Principal:
        presented = presented_key(headers)
        if presented is None:
            if self.required:
                raise AuthFailure(401, "missing API key: send it as 'Authorization: Bearer <key>' or "
                                       "'X-API-Key: <key>' (create one with `inferledger keys create`)")
            return ANONYMOUS
        found = self.keyring.find(presented)
        if not isinstance(found, _Match):
            raise AuthFailure(401, found)
        return found.principal()

    def require(self, headers: Mapping[str, str], role: str) -> Principal:
        principal = self.principal(headers)
        if not principal.has(role):
            allowed = "admin" if role == "admin" else f"{role} or admin"
            raise AuthFailure(403, f"API key {principal.key_id} ({principal.name}) has role {principal.role!r}; "
                                   f"this needs {allowed}", principal)
        return principal


def gate_for(data_dir: Path, host: str, config: AuthConfig) -> Gate:
    """The gate for a server on ``host``; AuthSetupError when that setup must not start."""
    loopback = is_loopback(host)
    if config.mode == "off" and not loopback:
        raise AuthSetupError(f"server.host {host} is not a loopback address, so API keys are required, but "
                             "auth.mode is \"off\": set it to \"auto\" or \"required\"")
    required = config.mode == "required" or (config.mode == "auto" and not loopback)
    gate = Gate(data_dir, required)
    if required and gate.keyring.active_count() == 0:
        where = "server.host is not loopback" if not loopback else "auth.mode is \"required\""
        raise AuthSetupError(f"authentication is required ({where}) but {keys_path(data_dir)} holds no active "
                             "API key: create one with `inferledger keys create --role ingest --name <service>`")
    return gate


def startup_notice(gate: Gate, host: str) -> str:
    """The line `serve` and `demo` print about authentication."""
    if gate.required:
        return f"authentication: API key required ({gate.keyring.active_count()} active key(s))"
    return (f"authentication: OFF - no API key needed; allowed only because {host} is loopback "
            "(set auth.mode = \"required\" to require keys)")


def ingest_authenticator(gate: Gate):
    """The ``collector.tenancy.Authenticate`` callable for the OTLP transports: role ingest, tenant scope."""
    from collector.errors import PermissionDenied, Unauthenticated

    def authenticate(headers: Mapping[str, str]) -> str | None:
        try:
            return gate.require(headers, "ingest").tenant
        except AuthFailure as failure:
            raise (Unauthenticated if failure.status == 401 else PermissionDenied)(failure.message) from None

    return authenticate
