"""Signed chain heads: Ed25519 signatures over the manifest's head, to keep outside the system.

The hash chain shows that nothing *inside* it was changed, but whoever can write
the data directory could rebuild the whole chain. A signed head (seq, entry_hash,
signed_at, key id) that an auditor exported earlier pins the history up to that
entry: a rewritten or truncated chain no longer contains it, and only the holder
of the private key can make a new one.

``sign_head`` signs the current head and appends it twice: as a ``signed_head``
manifest entry (so signing itself is chained; the entry is built under the
manifest's lock, so it always signs the entry right before it) and as a line of
``manifest/heads.jsonl``, which ``inferledger heads export`` hands to auditors.

The signed message is ``b"inferledger signed chain head v1\\n"`` followed by the
canonical JSON of ``{"entry_hash", "key_id", "seq", "signed_at"}``. The key id is
the first 16 hex digits of SHA-256 over the raw 32-byte public key.
"""
from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from warehouse.manifest import GENESIS_HASH, ChainHead, Manifest, Problem, canonical_json, opened

HEADS_FILE = Path("manifest") / "heads.jsonl"
ALGORITHM = "ed25519"
SIGNED_FIELDS = ("entry_hash", "key_id", "seq", "signed_at")
HEAD_FIELDS = (*SIGNED_FIELDS, "algorithm", "public_key", "signature")
_DOMAIN = b"inferledger signed chain head v1\n"


class SigningKeyError(Exception):
    """A key could not be read or written; the message says which and why."""


# --------------------------------------------------------------------------- keys

def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """PEM (PKCS#8, unencrypted), mode 0600; an existing file is never overwritten."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SigningKeyError(f"{path} already exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise SigningKeyError(f"cannot create {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(raw_public_key(key)).hexdigest()[:16]


def load_private_key(text: str | bytes, origin: str) -> Ed25519PrivateKey:
    """A PEM private key, or the raw 32-byte key as 64 hex digits; ``origin`` names it in errors."""
    data = text.encode() if isinstance(text, str) else text
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(data.decode().strip()))
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise SigningKeyError(f"{origin} is not an unencrypted Ed25519 private key (PEM or 64 hex digits): "
                              f"{exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{origin} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def configured_private_key(key_file: Path | None, key_env: str,
                           environ: Mapping[str, str] | None = None) -> Ed25519PrivateKey | None:
    """The signing key from ``[audit] signing_key_file``, else the ``signing_key_env`` variable; None if neither."""
    environ = os.environ if environ is None else environ
    if key_file is not None:
        try:
            return load_private_key(Path(key_file).read_bytes(), f"signing key file {key_file}")
        except OSError as exc:
            raise SigningKeyError(f"cannot read signing key file {key_file}: {exc.strerror or exc}") from None
    if environ.get(key_env):
        return load_private_key(environ[key_env], f"environment variable {key_env}")
    return None


def load_public_key(path: Path) -> Ed25519PublicKey:
    """A PEM public key (what ``heads keygen`` prints) or the raw key as 64 hex digits."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read public key {path}: {exc.strerror or exc}") from None
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_public_key(data)
        else:
            key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(data.decode().strip()))
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise SigningKeyError(f"{path} is not an Ed25519 public key (PEM or 64 hex digits): {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


# --------------------------------------------------------------------------- signing

def signed_message(head: Mapping) -> bytes:
    return _DOMAIN + canonical_json({name: head[name] for name in SIGNED_FIELDS})


def make_signed_head(private_key: Ed25519PrivateKey, head: ChainHead, signed_at: datetime) -> dict:
    public = private_key.public_key()
    signed = {"seq": head.seq, "entry_hash": head.entry_hash, "key_id": key_id(public),
              "signed_at": signed_at.isoformat(timespec="microseconds").replace("+00:00", "Z")}
    return {**signed, "algorithm": ALGORITHM, "public_key": raw_public_key(public).hex(),
            "signature": private_key.sign(signed_message(signed)).hex()}


def sign_head(data_dir: str | Path, private_key: Ed25519PrivateKey, manifest: Manifest | None = None) -> dict:
    """Sign the chain head now; append it to the manifest and to ``manifest/heads.jsonl``.

    The scheduler calls this every ``[audit] signing_interval_minutes`` with the
    server's manifest. Returns the signed head (``seq``, ``entry_hash``,
    ``signed_at``, ``key_id``, ``public_key``, ``signature``, ``algorithm``).
    """
    data_dir = Path(data_dir)
    made: list[dict] = []

    def build(head: ChainHead) -> list[dict]:
        made.append(make_signed_head(private_key, head, datetime.now(timezone.utc)))
        return [{"kind": "signed_head", "head": made[-1]}]

    with opened(data_dir, manifest) as appender:
        appender.append_at_head(build)
    _append_line(data_dir / HEADS_FILE, canonical_json(made[-1]) + b"\n")
    return made[-1]


def _append_line(path: Path, line: bytes) -> None:
    """One ``write`` with O_APPEND: concurrent signers never interleave their lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_heads(path: Path) -> tuple[list[dict], list[Problem]]:
    """Signed heads of a heads file (JSON lines), and a problem per line that is not one."""
    heads, problems = [], []
    for number, line in enumerate(Path(path).read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            head = json.loads(line)
        except ValueError:
            head = None
        if not isinstance(head, dict) or any(name not in head for name in HEAD_FIELDS) \
                or not isinstance(head["seq"], int):
            problems.append(Problem("heads_unreadable", f"line {number} is not a signed head", file=str(path)))
            continue
        heads.append(head)
    return heads, problems


# --------------------------------------------------------------------------- checking

def signature_problem(head: Mapping, trusted: Mapping[str, Ed25519PublicKey] | None, where: str,
                      seq: int | None = None) -> Problem | None:
    """Why ``head``'s signature is not acceptable, or None. ``trusted`` (key id -> key) pins the keys."""
    try:
        public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(head.get("public_key", "")))
        signature = bytes.fromhex(head.get("signature", ""))
        message = signed_message(head)
    except (ValueError, TypeError, KeyError) as exc:
        return Problem("bad_signature", f"{where}: unreadable key or signature ({exc})", seq)
    if key_id(public) != head.get("key_id"):
        return Problem("bad_signature", f"{where}: key_id {head.get('key_id')} is not the embedded key's", seq)
    if trusted is not None:
        pinned = trusted.get(head["key_id"])
        if pinned is None or raw_public_key(pinned) != raw_public_key(public):
            return Problem("untrusted_key", f"{where}: signed by key {head['key_id']}, trusted: "
                           f"{', '.join(sorted(trusted)) or 'none'}", seq)
    try:
        public.verify(signature, message)
    except InvalidSignature:
        return Problem("bad_signature", f"{where}: the Ed25519 signature does not verify", seq)
    return None


class HeadChecker:
    """A ``verify_chain`` observer: checks signed heads in the chain and heads kept outside it.

    ``external``: (origin, head) pairs, e.g. from an auditor's exported heads file.
    Each must verify and name an entry the chain still has with the same hash.
    """

    def __init__(self, external: Iterable[tuple[str, dict]] = (),
                 trusted: Mapping[str, Ed25519PublicKey] | None = None):
        self.trusted = trusted
        self.checked = 0
        self.problems: list[Problem] = []
        self.wanted: dict[int, list[tuple[str, dict]]] = {}
        for origin, head in external:
            self._check_external(origin, head)

    def _check_external(self, origin: str, head: dict) -> None:
        self.checked += 1
        problem = signature_problem(head, self.trusted, f"{origin}, head of seq {head['seq']}", head["seq"])
        if problem:
            self.problems.append(problem)
        elif head["seq"] == 0:
            if head["entry_hash"] != GENESIS_HASH:
                self.problems.append(Problem("head_mismatch", f"{origin}: seq 0 is not the genesis hash", 0))
        else:
            self.wanted.setdefault(head["seq"], []).append((origin, head))

    def see(self, entry: dict) -> list[Problem]:
        seq = entry.get("seq")
        problems = [Problem("head_mismatch", f"{origin} (signed {head['signed_at']}) names entry_hash "
                            f"{head['entry_hash'][:16]}…, the chain has {str(entry.get('entry_hash'))[:16]}…: "
                            "history was rewritten", seq)
                    for origin, head in self.wanted.pop(seq, []) if head["entry_hash"] != entry.get("entry_hash")]
        if entry.get("kind") == "signed_head":
            problems += self._check_in_chain(entry)
        return problems

    def _check_in_chain(self, entry: dict) -> list[Problem]:
        self.checked += 1
        seq, head = entry.get("seq"), entry.get("head")
        if not isinstance(head, dict) or any(name not in head for name in HEAD_FIELDS):
            return [Problem("bad_signature", "signed_head entry without a complete head", seq)]
        problem = signature_problem(head, self.trusted, "signed_head entry", seq)
        if problem:
            return [problem]
        if head["entry_hash"] != entry.get("prev_hash") or not isinstance(seq, int) or head["seq"] != seq - 1:
            return [Problem("head_mismatch", "the signed head does not name the entry before it", seq)]
        return []

    def finish(self, head: ChainHead) -> list[Problem]:
        problems = self.problems + [
            Problem("head_beyond_chain", f"{origin} (signed {signed['signed_at']}) names seq {seq}, but the chain "
                    f"ends at seq {head.seq}: entries were removed (truncated history)", seq)
            for seq, heads in sorted(self.wanted.items()) for origin, signed in heads]
        self.wanted = {}
        return problems
