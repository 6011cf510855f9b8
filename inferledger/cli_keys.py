"""`inferledger keys`: create, list and revoke API keys (stored hashed in <data_dir>/keys/api_keys.json).

Works while the server runs: the server re-reads the key file when it changes.
"""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from inferledger.auth import AuthSetupError, create_key, keys_path, list_keys, revoke_key

keys_app = typer.Typer(
    help="API keys for OTLP exporters, auditors and admins.\n\n"
    "Roles: ingest (send spans), auditor (read decisions and SQL), admin (everything, incl. erase and reprice). "
    "A key may be scoped to one tenant.",
    no_args_is_help=True,
)
console = Console(stderr=True)
ConfigOption = typer.Option(None, "--config", "-c", help="TOML configuration file.")
DataDirOption = typer.Option(None, "--data-dir", "-d", help="Data directory (overrides the configuration).")


class RoleChoice(str, Enum):
    ingest = "ingest"
    auditor = "auditor"
    admin = "admin"


def _data_dir(config_path: Optional[Path], data_dir: Optional[Path]) -> Path:
    from inferledger.cli import _load

    return Path(_load(config_path, data_dir=data_dir).data_dir)


@keys_app.command("create")
def create(
    role: RoleChoice = typer.Option(..., "--role", help="ingest, auditor or admin."),
    name: str = typer.Option(..., "--name", help="Who or what uses the key (shown in the access log)."),
    tenant: Optional[str] = typer.Option(None, "--tenant", help="Scope the key to one tenant's records."),
    config_path: Optional[Path] = ConfigOption,
    data_dir: Optional[Path] = DataDirOption,
) -> None:
    """Create an API key and print it once: only its hash is stored, so copy it now.

    Exporters send it with OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer <key>";
    API clients as `Authorization: Bearer <key>` or `X-API-Key: <key>`.
    """
    directory = _data_dir(config_path, data_dir)
    try:
        record, plain = create_key(directory, role.value, name, tenant)
    except (ValueError, AuthSetupError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    scope = f", tenant {record.tenant}" if record.tenant else ""
    console.print(f"created key {record.id} ({record.name}, role {record.role}{scope}); it is shown only once:")
    typer.echo(plain)


@keys_app.command("list")
def list_command(config_path: Optional[Path] = ConfigOption, data_dir: Optional[Path] = DataDirOption) -> None:
    """List every key: id, name, role, tenant scope, when it was created and whether it is revoked."""
    directory = _data_dir(config_path, data_dir)
    try:
        keys = list_keys(directory)
    except AuthSetupError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    table = Table("id", "name", "role", "tenant", "created", "revoked")
    for key in keys:
        table.add_row(key.id, key.name, key.role, key.tenant or "(all)", key.created_at,
                      (key.revoked_at or "yes") if key.revoked else "", style="dim" if key.revoked else None)
    table.caption = f"{len(keys)} key(s) in {keys_path(directory)}"
    Console().print(table)


@keys_app.command("revoke")
def revoke(
    key_id: str = typer.Argument(..., help="The key's id (see `inferledger keys list`)."),
    config_path: Optional[Path] = ConfigOption,
    data_dir: Optional[Path] = DataDirOption,
) -> None:
    """Revoke a key: the running server refuses it from its next request on. The record is kept."""
    directory = _data_dir(config_path, data_dir)
    try:
        record = revoke_key(directory, key_id)
    except KeyError as exc:
        console.print(f"[red]error:[/red] {exc.args[0]}")
        raise typer.Exit(1) from None
    console.print(f"revoked key {record.id} ({record.name}) at {record.revoked_at}")
