"""`[reports]` validation, template overrides and how figures are written."""
from __future__ import annotations

import pytest

from inferledger.config import ConfigError
from reports.config import ReportsConfig
from reports.formatting import money_short, signed_money, signed_percent, text_table, unit_money
from reports.render import BUILTIN_TEMPLATES, ReportTemplateError, environment, render
from tests.conftest import make_config


def test_defaults_and_overrides(tmp_path):
    config = make_config(tmp_path, reports__timezone="Europe/Berlin", reports__recipients=["cfo@example.com"],
                         reports__models=[{"model": "fraud-*", "owner": "Risk", "purpose": "Screening"}])
    assert config.reports.weekly_schedule == "0 8 * * 1" and config.reports.zone.key == "Europe/Berlin"
    assert config.reports.models[0].version == "*" and config.reports.audit_sample_size == 25


@pytest.mark.parametrize("setting, value, message", [
    ("reports__timezone", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ("reports__weekly_schedule", "every monday", "weekly_schedule is not a 5-field cron expression"),
    ("reports__recipients", ["finance"], "recipient 'finance' is not an email address"),
    ("reports__audit_seed", -1, "reports.audit_seed"),
    ("reports__colour", "blue", "reports.colour: unknown setting"),
])
def test_bad_settings_are_clear_errors(tmp_path, setting, value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("*", r"\*")):
        make_config(tmp_path, **{setting: value})


def test_a_template_in_templates_dir_replaces_the_builtin_one(tmp_path):
    (tmp_path / "weekly.txt.j2").write_text("custom {{ report | money }}\n")
    config = ReportsConfig(templates_dir=tmp_path, currency_symbol="€")
    assert render(config, "weekly.txt.j2", report=1234.5) == "custom €1,234.50\n"
    assert environment(config).get_template("audit.html.j2").filename == str(BUILTIN_TEMPLATES / "audit.html.j2")


def test_template_errors_name_the_template(tmp_path):
    (tmp_path / "weekly.txt.j2").write_text("{{ report.nothing_here }}\n")
    with pytest.raises(ReportTemplateError, match="template .*weekly.txt.j2"):
        render(ReportsConfig(templates_dir=tmp_path), "weekly.txt.j2", report={})
    with pytest.raises(ReportTemplateError, match="is not a directory"):
        render(ReportsConfig(templates_dir=tmp_path / "missing"), "weekly.txt.j2", report={})


def test_figures_are_written_for_people():
    assert [money_short(v) for v in (41234.0, 1_350_000, 950.4, 20.4, None)] == [
        "$41.2k", "$1.35M", "$950", "$20.40", "—"]
    assert [signed_percent(v) for v in (0.183, -0.05, 0.0, None)] == ["+18%", "-5%", "±0%", "—"]
    assert [signed_money(v) for v in (38.5, -4.0, 0.0)] == ["+$38.50", "-$4.00", "$0.00"]
    assert [unit_money(v) for v in (0.0042, 0.05, 1.25, 0.0)] == ["$0.0042", "$0.05", "$1.25", "$0"]
    assert text_table([["Model", "Cost"], ["gpt-4o", "$84.00"], ["o3", "$1,200.00"]]).splitlines() == [
        "  Model        Cost", "  gpt-4o     $84.00", "  o3      $1,200.00"]
