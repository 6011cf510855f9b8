"""Audit commands: ``inferledger verify``, ``inferledger erase`` and ``inferledger heads``.

Registered on the main app by ``inferledger/cli.py``. Exit status: 0 done (verified),
1 the command ran and found problems, 2 usage errors (bad option, missing key or
data directory).
"""
from __future__ import annotations

import fcntl
import getpass
import os
import sys
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from inferledger.config import Config, ConfigError, load_config

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)
ConfigOption = typer.Option(None, "--config", "-c", help="TOML configuration file.")
DataDirOption = typer.Option(None, "--data-dir", "-d", help="Data directory (overrides the configuration).")

heads_app = typer.Typer(help="Signed chain heads: sign the manifest's head, export heads for auditors, make a key.",
                        no_args_is_help=True)


def _fail(message: str, status: int = 2) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(status)


def _config(config_path: Optional[Path], data_dir: Optional[Path]) -> Config:
    """The configuration, with a data directory that exists (these commands never create one)."""
    try:
        config = load_config(config_path, data_dir=data_dir)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    if not Path(config.data_dir).is_dir():
        raise _fail(f"data directory {config.data_dir} does not exist")
    return config


def _day(value: Optional[str], option: str) -> Optional[date]:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        raise _fail(f"{option} {value!r} is not a date (YYYY-MM-DD)") from None


# --------------------------------------------------------------------------- verify

def verify(
    date_from: Optional[str] = typer.Option(None, "--from", help="Check only files of days from this one (YYYY-MM-DD)."),
    date_to: Optional[str] = typer.Option(None, "--to", help="Check only files of days up to this one (YYYY-MM-DD)."),
    public_key: Optional[list[Path]] = typer.Option(
        None, "--public-key", help="Trusted public key (PEM, or 64 hex digits); repeat for several. "
        "Heads signed by any other key are reported."),
    heads: Optional[list[Path]] = typer.Option(
        None, "--heads", help="Heads exported earlier with `inferledger heads export`; each must still be in the chain."),
    config_path: Optional[Path] = ConfigOption,
    data_dir: Optional[Path] = DataDirOption,
) -> None:
    """Check the tamper-evident log: the hash chain, every file's hash, and the signed heads.

    Recomputes every manifest entry's hash and link, hashes every file the manifest
    lists (only the days in --from/--to when given; the chain is always checked whole)
    and looks for files it does not list, checks every signed head's signature and that
    each head from --heads files still matches the chain. Exit status 0 when everything
    verifies, 1 when a problem was found, 2 on usage errors.
    """
    from warehouse.signing import SigningKeyError, load_public_key
    from warehouse.verify import verify as run_verify

    config = _config(config_path, data_dir)
    first, last = _day(date_from, "--from"), _day(date_to, "--to")
    if first and last and last < first:
        raise _fail("--to is before --from")
    try:
        keys = [load_public_key(path) for path in public_key or []]
        report = run_verify(Path(config.data_dir), first, last, keys, heads)
    except SigningKeyError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot read {exc.filename}: {exc.strerror}") from None
    _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


def _print_report(report) -> None:
    for problem in report.problems:
        where = " ".join(part for part in (f"seq {problem.seq}" if problem.seq is not None else "",
                                           problem.file or "") if part)
        out.print(f"[red]{problem.kind}[/red]  {escape(where)}  {escape(problem.detail)}")
    stats = report.stats
    summary = (f"{stats.entries:,} entries checked, {stats.files_checked:,} files checked, "
               f"{stats.bytes_hashed:,} bytes hashed, {report.heads_checked:,} signed heads checked")
    if report.ok:
        out.print(f"[green]verified[/green]: {summary}")
    else:
        counts = ", ".join(f"{kind} {n}" for kind, n in sorted(Counter(p.kind for p in report.problems).items()))
        out.print(f"[red]NOT verified[/red]: {len(report.problems)} problem(s) ({counts}); {summary}")
    out.print(f"chain head: seq {stats.head.seq} {stats.head.entry_hash}")
    if report.trusted_keys:
        out.print(f"trusted signing keys: {', '.join(report.trusted_keys)}")
    elif report.heads_checked:
        out.print("signatures were checked against the keys embedded in the heads; pin yours with --public-key")


# --------------------------------------------------------------------------- erase

def erase(
    subject: str = typer.Option(..., "--subject", help="The person's id as services send it (inferledger.subject.id, "
                                "user.id or a reviewer id); pseudonymized with the collector's key."),
    reason: str = typer.Option("", "--reason", help="Why (kept in the erasure receipt)."),
    actor: Optional[str] = typer.Option(None, "--actor", help="Who asked for it (default: your login name)."),
    wait: float = typer.Option(60.0, "--wait", help="Seconds to wait for a running server to land spans of the "
                               "subject that are still in its write-ahead log."),
    config_path: Optional[Path] = ConfigOption,
    data_dir: Optional[Path] = DataDirOption,
) -> None:
    """Erase a person's personal data from every file, keeping the log verifiable (admin).

    Every file holding the person's pseudonym (landed or compacted segments, exports
    under the data directory) is rewritten with their ids, conversation id and
    free-form attributes erased; decisions, costs and counts stay. A chained `erasure`
    manifest entry links old and new file hashes, and a receipt goes to the `erasures`
    view. Works beside a running server; with none, the write-ahead log is landed first.
    """
    from collector.pseudonymize import pseudonymize
    from warehouse.erasure import ErasureError, erase_subject

    config = _config(config_path, data_dir)
    if not subject.strip():
        raise _fail("--subject is empty")
    pseudonym = pseudonymize(subject, _existing_subject_key(config))
    _land_wal_without_server(config)
    try:
        receipt = erase_subject(Path(config.data_dir), pseudonym, manifest=None, actor=actor or _login_name(),
                                reason=reason, wal_timeout_s=wait)
    except ErasureError as exc:
        raise _fail(str(exc), 1) from None
    _print_receipt(receipt)
    _sign_if_configured(config)
    if receipt["not_erased"]:
        console.print(f"[yellow]warning:[/yellow] the pseudonym is still in {', '.join(receipt['not_erased'])} "
                      "(chained entries cannot be rewritten)")
        raise typer.Exit(1)


def _existing_subject_key(config: Config) -> bytes:
    """The collector's key; never a new one (a new key would match nobody)."""
    from inferledger.config import subject_key

    key_file = Path(config.data_dir) / "keys" / "subject.key"
    if not os.environ.get(config.privacy.subject_key_env) and not key_file.exists():
        raise _fail(f"no pseudonymization key: set ${config.privacy.subject_key_env} to the key the collector "
                    f"uses (or run where {key_file} exists)")
    return subject_key(config)


def _land_wal_without_server(config: Config) -> None:
    """With no server writing the data dir, land its write-ahead log here (as a server start would)."""
    from inferledger.app import StartupError, price_book, storage_settings
    from warehouse.storage import Storage

    data_dir = Path(config.data_dir)
    if not any((data_dir / "wal").glob("*/*.wal")) or _server_running(data_dir):
        return
    try:
        storage = Storage(data_dir, storage_settings(config, price_book(config)))
        storage.start()
    except (StartupError, RuntimeError):  # a server started meanwhile: it lands the log
        return
    console.print("landing the write-ahead log first (no server is running)…")
    storage.stop()


def _server_running(data_dir: Path) -> bool:
    lock = data_dir / "wal" / "writer.lock"
    if not lock.exists():
        return False
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _print_receipt(receipt: dict) -> None:
    out.print(f"erasure [bold]{receipt['erasure_id']}[/bold] by {escape(receipt['actor'])} at {receipt['erased_at']}")
    out.print(f"  subject hash     {receipt['subject_hash']}")
    out.print(f"  rows erased      {receipt['rows_affected']:,}")
    for item in receipt["files_rewritten"]:
        out.print(f"  rewritten        {item['file']} -> {item['new_file']} ({item['rows_erased']:,} rows erased)")
    for name in receipt["files_removed"]:
        out.print(f"  removed          {name}")
    for name in receipt["files_scrubbed"]:
        out.print(f"  scrubbed         {name}")
    out.print(f"  chain entry      seq {receipt['chain_seq']} {receipt['chain_entry_hash']}")
    out.print(f"  receipt          {receipt['receipt_file']} (view: erasures)")


def _sign_if_configured(config: Config) -> None:
    from warehouse.signing import SigningKeyError, configured_private_key, sign_head

    try:
        key = configured_private_key(config.audit.signing_key_file, config.audit.signing_key_env)
    except SigningKeyError as exc:
        console.print(f"[yellow]warning:[/yellow] head not signed: {escape(str(exc))}")
        return
    if key is not None:
        head = sign_head(Path(config.data_dir), key)
        out.print(f"  signed head      seq {head['seq']} by key {head['key_id']}")


# --------------------------------------------------------------------------- heads

@heads_app.command("sign")
def heads_sign(config_path: Optional[Path] = ConfigOption, data_dir: Optional[Path] = DataDirOption) -> None:
    """Sign the manifest's chain head now with the configured Ed25519 key (audit.signing_key_file)."""
    from warehouse.signing import SigningKeyError, configured_private_key, sign_head

    config = _config(config_path, data_dir)
    try:
        key = configured_private_key(config.audit.signing_key_file, config.audit.signing_key_env)
    except SigningKeyError as exc:
        raise _fail(str(exc)) from None
    if key is None:
        raise _fail(f"no signing key: set [audit] signing_key_file or ${config.audit.signing_key_env} "
                    "(create a key with `inferledger heads keygen --out FILE`)")
    head = sign_head(Path(config.data_dir), key)
    out.print(f"signed seq {head['seq']} {head['entry_hash']} at {head['signed_at']} with key {head['key_id']}")


@heads_app.command("export")
def heads_export(
    output: Optional[Path] = typer.Option(None, "--out", "-o", help="Write to this file instead of standard output."),
    config_path: Optional[Path] = ConfigOption,
    data_dir: Optional[Path] = DataDirOption,
) -> None:
    """Print every signed head as JSON lines, for an auditor to keep outside the system.

    Later, `inferledger verify --heads FILE` checks that each still matches the chain.
    """
    from warehouse.signing import HEADS_FILE

    config = _config(config_path, data_dir)
    path = Path(config.data_dir) / HEADS_FILE
    data = path.read_bytes() if path.exists() else b""
    if not data:
        console.print("no signed heads yet: `inferledger heads sign` makes one")
    if output is None:
        sys.stdout.write(data.decode())
        return
    try:
        output.write_bytes(data)
    except OSError as exc:
        raise _fail(f"cannot write {output}: {exc.strerror or exc}") from None
    heads_written = data.count(b"\n")
    console.print(f"{heads_written:,} signed head(s) written to {output}")


@heads_app.command("keygen")
def heads_keygen(out_file: Path = typer.Option(..., "--out", "-o", help="Where to write the private key (PEM, mode 0600).")) -> None:
    """Create an Ed25519 signing key: writes the private key, prints the public key for auditors."""
    from warehouse.signing import SigningKeyError, generate_private_key, key_id, public_key_pem, write_private_key

    key = generate_private_key()
    try:
        write_private_key(out_file, key)
    except SigningKeyError as exc:
        raise _fail(str(exc)) from None
    sys.stdout.write(public_key_pem(key.public_key()))
    console.print(escape(f"private key written to {out_file} (mode 0600); key id {key_id(key.public_key())}. "
                         f"Set [audit] signing_key_file = \"{out_file}\" and give auditors the public key above "
                         "(verify --public-key)."))
