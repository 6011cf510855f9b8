"""Documentation kept next to the code stays current and complete."""
from __future__ import annotations

from pathlib import Path

from typer.main import get_command

from inferledger.cli import app
from inferledger.config import render_reference

ROOT = Path(__file__).resolve().parents[1]


def test_configuration_reference_is_generated_from_the_models():
    assert (ROOT / "docs" / "configuration.md").read_text() == render_reference(), (
        "run: python -m inferledger.config > docs/configuration.md"
    )


def test_every_command_has_help_and_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for name, command in get_command(app).commands.items():
        assert command.help and len(command.help) > 20, f"command {name} needs help text"
        assert f"inferledger {name}" in readme, f"README does not mention `inferledger {name}`"


def test_stages_depend_one_way():
    """Only the wiring package imports the collector; the warehouse imports no other stage."""
    for package in ("warehouse", "alerts", "reports"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            assert "from collector" not in text and "import collector" not in text, f"{path} imports the collector"
    for path in (ROOT / "warehouse").rglob("*.py"):
        text = path.read_text()
        for other in ("alerts", "reports", "inferledger"):
            assert f"from {other}" not in text and f"import {other}" not in text, f"{path} imports {other}"
