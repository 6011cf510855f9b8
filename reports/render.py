"""Templates: Jinja2 from ``reports/templates/``, each replaceable from ``reports.templates_dir``.

A file in the configured directory wins over the built-in one of the same name, so
a team can restyle the weekly email without forking inferledger; a template it
does not override stays the built-in one. Undefined names are errors
(``StrictUndefined``): a typo in a custom template fails loudly instead of
printing nothing. HTML templates are autoescaped; the plain-text one is not.
"""
from __future__ import annotations

from functools import partial
import re
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, TemplateError, select_autoescape
from markupsafe import Markup, escape

from reports.config import ReportsConfig
from reports.formatting import FILTERS, money, money_short, signed_money, unit_money

BUILTIN_TEMPLATES = Path(__file__).parent / "templates"
_BACKTICKS = re.compile(r"`([^`]+)`")
CODE_STYLE = "font-family:Menlo,Consolas,monospace;font-size:12px;background:#f1f5f9;padding:0 3px;"


class ReportTemplateError(Exception):
    """A template could not be loaded or rendered; the message names the template and the line."""


def environment(config: ReportsConfig) -> Environment:
    loaders = []
    if config.templates_dir is not None:
        if not Path(config.templates_dir).is_dir():
            raise ReportTemplateError(f"reports.templates_dir {config.templates_dir} is not a directory")
        loaders.append(FileSystemLoader(str(config.templates_dir)))
    loaders.append(FileSystemLoader(str(BUILTIN_TEMPLATES)))
    env = Environment(loader=ChoiceLoader(loaders), undefined=StrictUndefined, trim_blocks=True,
                      lstrip_blocks=True, keep_trailing_newline=True,
                      autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False))
    env.filters.update(FILTERS)
    env.filters["code"] = inline_code
    symbol = config.currency_symbol
    env.filters.update(money=partial(money, symbol=symbol, decimals=config.currency_decimals),
                       money_short=partial(money_short, symbol=symbol),
                       signed_money=partial(signed_money, symbol=symbol), unit_money=partial(unit_money, symbol=symbol))
    return env


def inline_code(text: str) -> Markup:
    """HTML for a hint written with `backticks` (the plain-text part shows them as they are)."""
    return Markup(_BACKTICKS.sub(lambda m: f'<code style="{CODE_STYLE}">{m.group(1)}</code>', str(escape(text))))


def render(config: ReportsConfig, template: str, **context) -> str:
    try:
        return environment(config).get_template(template).render(**context)
    except TemplateError as exc:
        where = f" line {exc.lineno}" if getattr(exc, "lineno", None) else ""
        name = getattr(exc, "filename", None) or template
        raise ReportTemplateError(f"template {name}{where}: {exc.message or exc}") from None
