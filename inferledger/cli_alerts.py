"""`inferledger alerts`: check the rules, see alert states, silence, run an evaluation, test a channel.

Exit status: 0 done, 1 the command found problems (invalid rules, failed deliveries),
2 usage errors (bad option, missing data directory).
"""
from __future__ import annotations

import fnmatch
import getpass
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from inferledger.config import Config, ConfigError, load_config

alerts_app = typer.Typer(
    help="Alert rules over the jobs' metrics: check them, list states and deliveries, silence, run, test channels.\n\n"
    "`inferledger serve` evaluates the rules after every job run; see alerts/README.md.",
    no_args_is_help=True,
)
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)
ConfigOption = typer.Option(None, "--config", "-c", help="TOML configuration file.")
DataDirOption = typer.Option(None, "--data-dir", "-d", help="Data directory (overrides the configuration).")


def _fail(message: str, status: int = 2) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(status)


def _config(config_path: Optional[Path], data_dir: Optional[Path], status: int = 2,
            must_exist: bool = True) -> Config:
    try:
        config = load_config(config_path, data_dir=data_dir)
    except ConfigError as exc:
        raise _fail(str(exc), status) from None
    if must_exist and not Path(config.data_dir).is_dir():
        raise _fail(f"data directory {config.data_dir} does not exist")
    return config


@alerts_app.command("check")
def check(config_path: Optional[Path] = ConfigOption, data_dir: Optional[Path] = DataDirOption) -> None:
    """Validate the alert rules, channels and silences, and print the rules in force.

    Catches unknown metrics (with a did-you-mean), bad thresholds and durations, unknown
    channels, verdicts and rule references, and missing secrets. Exit status 1 on any error.
    """
    from alerts.rules import check_alerts

    config = _config(config_path, data_dir, status=1, must_exist=False)
    _print_rules(config)
    problems = check_alerts(config) + _uncatalogued(Path(config.data_dir))
    for problem in problems:
        colour = "red" if problem.level == "error" else "yellow"
        console.print(f"[{colour}]{problem.level}:[/{colour}] {escape(problem.message)}")
    errors = sum(problem.level == "error" for problem in problems)
    if errors:
        raise _fail(f"{errors} error(s) in the alert configuration", 1)
    console.print("alert configuration OK")


def _print_rules(config: Config) -> None:
    """One line per rule, ``name severity metric{labels} condition [for] -> channels (source)``."""
    from alerts.catalogue import CATALOGUE
    from alerts.conditions import condition_text
    from alerts.rules import effective_rules, rule_channels, rule_source

    rules = effective_rules(config.alerts)
    out.print(f"{len(rules)} rule(s) in force:", highlight=False)
    for rule in rules:
        labels = ", ".join(f"{key}={json.dumps(value)}" for key, value in rule.labels.items())
        pending = f" for {rule.for_}" if rule.pending_for.total_seconds() else ""
        channels = ", ".join(rule_channels(config, rule)) or "(no channel)"
        condition = condition_text(rule, CATALOGUE[rule.metrics[0]].unit)
        out.print(escape(f"  {rule.name:<27} {rule.severity:<8} {rule.metric}{{{labels}}} {condition}{pending} "
                         f"-> {channels} ({rule_source(config.alerts, rule)})"), highlight=False)


def _uncatalogued(data_dir: Path) -> list:
    """Metrics the jobs wrote that rules cannot name yet: the catalogue is behind the jobs."""
    from alerts.catalogue import CATALOGUE
    from alerts.rules import Problem
    from alerts.series import warehouse_metric_names

    if not (data_dir / "results" / "job_metrics").is_dir():
        return []
    return [Problem("warning", f"metric {name!r} is in job_metrics but not in alerts/catalogue.py; rules cannot use it")
            for name in warehouse_metric_names(data_dir) if name not in CATALOGUE]


@alerts_app.command("list")
def list_alerts(
    show_all: bool = typer.Option(False, "--all", "-a", help="Also show ok alerts and expired silences."),
    deliveries: int = typer.Option(10, "--deliveries", help="How many recent delivery attempts to show."),
    config_path: Optional[Path] = ConfigOption,
    data_dir: Optional[Path] = DataDirOption,
) -> None:
    """Show alert states (pending, firing, resolved), silences and recent deliveries with their outcome."""
    from alerts.outbox import pending
    from alerts.silences import all_silences

    config = _config(config_path, data_dir)
    now = datetime.now(UTC)
    root = Path(config.data_dir)
    out.print(_states_table(root, show_all))
    silences = [s for s in all_silences(root, config.alerts) if show_all or s.is_active(now)]
    out.print(_silences_table(silences, now))
    out.print(_deliveries_table(root, deliveries))
    waiting = len(pending(root))
    if waiting:
        console.print(f"{waiting} message(s) waiting in the outbox for a channel to come back")


def _states_table(root: Path, show_all: bool) -> Table:
    from alerts.catalogue import CATALOGUE
    from alerts.formatting import format_labels, format_time, format_value
    from alerts.state import load_states

    order = {"firing": 0, "pending": 1, "resolved": 2, "ok": 3}
    states = sorted((s for s in load_states(root).values() if show_all or s.state != "ok"),
                    key=lambda s: (order[s.state], s.rule, s.labels))
    table = Table("alert", "rule", "severity", "state", "since", "labels", "value", "why", title="alerts")
    for state in states:
        unit = CATALOGUE[state.metric].unit if state.metric in CATALOGUE else "statistic"
        style = {"firing": "red", "pending": "yellow", "resolved": "green"}.get(state.state)
        shown = f"{state.state} ({state.muted})" if state.muted and state.state != "ok" else state.state
        table.add_row(state.alert_id, state.rule, state.severity, shown, format_time(state.since),
                      format_labels(json.loads(state.labels)), format_value(state.value, unit), state.reason or "",
                      style=style)
    table.caption = f"{len(states)} alert(s)" + ("" if show_all else " not ok (--all shows every alert)")
    return table


def _silences_table(silences, now: datetime) -> Table:
    from alerts.formatting import format_time

    table = Table("silence", "rule", "labels", "until", "comment", "by", title="silences")
    for silence in silences:
        until = format_time(silence.ends_at) + ("" if silence.is_active(now) else " (expired)")
        labels = ", ".join(f"{k}={v}" for k, v in sorted(silence.labels.items())) or "(all)"
        table.add_row(silence.silence_id, silence.rule, labels, until, silence.comment, silence.created_by)
    return table


def _deliveries_table(root: Path, limit: int) -> Table:
    from alerts.formatting import format_time
    from alerts.state import DELIVERIES_TABLE, ensure_alert_tables
    from warehouse.catalog import query

    ensure_alert_tables(root)
    rows = query(root, f"SELECT attempted_at, rule, kind, channel, target, attempt, outcome, error "
                       f"FROM {DELIVERIES_TABLE} ORDER BY attempted_at DESC LIMIT ?", [max(limit, 0)]).to_pylist()
    table = Table("time", "rule", "kind", "channel", "attempt", "outcome", "error", title="recent deliveries")
    for row in rows:
        style = "red" if row["outcome"] in ("failed", "dropped") else None
        table.add_row(format_time(row["attempted_at"]), row["rule"], row["kind"], f"{row['channel']} ({row['target']})",
                      str(row["attempt"]), row["outcome"], row["error"] or "", style=style)
    return table


@alerts_app.command("silence")
def silence(
    rule: str = typer.Option(..., "--rule", help="Rule name, or a glob over rule names (`*` = every rule)."),
    label: Optional[list[str]] = typer.Option(None, "--label", help="Only alerts with this label, KEY=VALUE (glob); repeat for more."),
    duration: str = typer.Option(..., "--for", help="How long, e.g. 30m, 2h, 1d."),
    comment: str = typer.Option(..., "--comment", help="Why; shown in `inferledger alerts list`."),
    created_by: str = typer.Option(getpass.getuser(), "--by", help="Who silences (default: the current user)."),
    config_path: Optional[Path] = ConfigOption,
    data_dir: Optional[Path] = DataDirOption,
) -> None:
    """Mute a rule, or some of its label sets, for a while; state changes are still recorded.

    Example: inferledger alerts silence --rule cost-anomaly --label value=fraud-screening --for 2h --comment "load test"
    """
    from alerts.catalogue import did_you_mean
    from alerts.config import parse_duration
    from alerts.rules import effective_rules
    from alerts.silences import add_silence

    config = _config(config_path, data_dir)
    names = [r.name for r in effective_rules(config.alerts)]
    if not any(fnmatch.fnmatchcase(name, rule) for name in names):
        raise _fail(f"rule {rule!r} matches no rule in force{did_you_mean(rule, names)}")
    try:
        delta = parse_duration(duration)
    except ValueError as exc:
        raise _fail(f"--for: {exc}") from None
    if delta.total_seconds() <= 0 or not comment.strip():
        raise _fail("--for must be longer than 0 and --comment must say why")
    labels = _parse_labels(label or [])
    made = add_silence(Path(config.data_dir), rule, labels, delta, comment.strip(), created_by, datetime.now(UTC))
    out.print(f"silence {made.silence_id} mutes {rule} {labels or ''} until {made.ends_at:%Y-%m-%d %H:%M} UTC")


def _parse_labels(pairs: list[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise _fail(f"--label {pair!r}: use KEY=VALUE")
        labels[key.strip()] = value.strip()
    return labels


@alerts_app.command("unsilence")
def unsilence(
    silence_id: str = typer.Argument(..., help="Silence id, as `inferledger alerts list` shows it."),
    config_path: Optional[Path] = ConfigOption,
    data_dir: Optional[Path] = DataDirOption,
) -> None:
    """End a silence made with `inferledger alerts silence` now (configured silences end by editing the file)."""
    from alerts.silences import expire_silence

    config = _config(config_path, data_dir)
    try:
        expire_silence(Path(config.data_dir), silence_id, datetime.now(UTC))
    except KeyError as exc:
        raise _fail(exc.args[0], 1) from None
    out.print(f"silence {silence_id} ended")


@alerts_app.command("run")
def run(config_path: Optional[Path] = ConfigOption, data_dir: Optional[Path] = DataDirOption) -> None:
    """Evaluate the rules now and deliver what is due (what `inferledger serve` does after every job run).

    Exit status 1 when evaluation failed or a delivery failed for good.
    """
    from alerts.run import run_alerts

    config = _config(config_path, data_dir)
    result = run_alerts(Path(config.data_dir), config)
    if result.skipped:
        console.print(f"skipped: {escape(result.skipped)}")
        return
    if result.error:
        raise _fail(f"evaluation failed: {result.error}", 1)
    out.print(f"{result.notifications} notification(s); delivered {result.sent}, failed {result.failed}, "
              f"waiting to retry {result.queued}, dropped {result.dropped}")
    if not result.ok:
        raise typer.Exit(1)


@alerts_app.command("test")
def test_channel(
    channel: Optional[list[str]] = typer.Option(None, "--channel", help="Channel to test (`email` or a webhook name); default: every channel."),
    config_path: Optional[Path] = ConfigOption,
    data_dir: Optional[Path] = DataDirOption,
) -> None:
    """Send a test notification to each channel (or the ones named) and report what happened.

    Exit status 1 when any channel failed.
    """
    from alerts.delivery import send_test
    from alerts.errors import DeliveryError
    from alerts.rules import configured_channels

    config = _config(config_path, data_dir, must_exist=False)
    channels = channel or configured_channels(config)
    if not channels:
        raise _fail("no channel is configured: add [smtp] or [[webhooks]] to the configuration", 1)
    failed = 0
    for name in channels:
        try:
            send_test(config, name, datetime.now(UTC))
            out.print(f"{name}: sent")
        except DeliveryError as exc:
            failed += 1
            console.print(f"[red]{escape(name)}: failed:[/red] {escape(str(exc))}")
    if failed:
        raise typer.Exit(1)
