"""Redaction of captured content: emails, card numbers, phone numbers, custom patterns.

Only matters when ``ingest.capture_content`` is on (content is dropped otherwise).
Then every content attribute (``attributes.CONTENT_KEYS`` / ``CONTENT_PREFIXES``:
prompts, completions, tool payloads) is redacted during normalization, before the
record reaches the write-ahead log, so no file ever holds the original. A match is
replaced by a typed placeholder: ``[EMAIL]``, ``[CARD_NUMBER]``, ``[PHONE_NUMBER]``,
or ``[<NAME>]`` for a custom pattern named ``name``.

* **Emails**: ``local@domain.tld``.
* **Card numbers**: 13-19 digits, optionally grouped by single spaces or dashes,
  starting with 2-6 (Mastercard 2/5, Amex, Diners and JCB 3, Visa 4, Discover and
  UnionPay 6) and passing the Luhn check. A 16-digit order id that fails Luhn, or
  a nanosecond timestamp (starts with 1), stays as it is.
* **Phone numbers**, international forms: ``+`` or ``00``, then a country code
  (never starting with 0) and 8-15 digits in all (E.164's range) with spaces, dots, dashes or
  parentheses between them: ``+1 (415) 555-2671``, ``+44 20 7946 0958``,
  ``0049 30 1234567``. National forms without a country code are not recognized.
* **Custom patterns** (``privacy.redact_patterns``, name = Python regex) run after
  the built-in rules, one ``re.sub`` each.

Each rule is one compiled pattern, skipped when the text lacks a character it needs
("@" for emails, "+" or "00" for phone numbers); the checks a regex cannot express
(Luhn, digit counts) run only on candidates.
Patterns are compiled once per process (``NormalizeSettings`` builds the redactor).
Values inside JSON text stay valid JSON: placeholders contain no quotes or backslashes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from collector.attributes import CONTENT_KEYS, CONTENT_PREFIXES

BUILTIN_RULES = ("email", "card_number", "phone_number")
# Each pattern starts with a character class and checks what precedes it with a lookbehind
# after that first character: the regex engine then skips ahead by that class instead of
# trying the whole pattern at every position (4x faster on prose).
_BUILTIN_PATTERNS = {
    "email": r"[A-Za-z0-9._%+-](?<![\w.+-].)[A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
    "card_number": r"[2-6](?<![\d-].)(?:[ -]?\d){12,18}(?!\d)",
    "phone_number": r"[+0](?<![\w+].)(?:(?<=\+)|(?<=0)0)[1-9]\d{0,3}(?:[ .\-]?\(?\d{1,5}\)?){1,6}(?!\d)",
}
# Text without these cannot match: skip the scan (most content has no "@", many no "+").
_MUST_CONTAIN = {"email": ("@",), "card_number": (), "phone_number": ("+", "00")}
_PLACEHOLDER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_NOT_DIGIT = re.compile(r"\D")


@dataclass(frozen=True)
class RedactionRules:
    """Which rules apply. Plain data, so it pickles to the normalizer worker processes."""

    builtin: tuple[str, ...] = BUILTIN_RULES
    patterns: tuple[tuple[str, str], ...] = ()  # (name, regex)

    def __post_init__(self):
        unknown = set(self.builtin) - set(BUILTIN_RULES)
        if unknown:
            raise ValueError(f"unknown redaction rule(s) {sorted(unknown)}; known: {list(BUILTIN_RULES)}")
        check_patterns(dict(self.patterns))

    @property
    def active(self) -> bool:
        return bool(self.builtin or self.patterns)


def check_patterns(patterns: dict[str, str]) -> dict[str, str]:
    """Names must make a placeholder (letters, digits, _); patterns must compile. Clear errors otherwise."""
    for name, pattern in patterns.items():
        if not _PLACEHOLDER_NAME.fullmatch(name):
            raise ValueError(f"redaction pattern name {name!r} must be letters, digits and _ (it becomes [{name}])")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"redaction pattern {name!r} is not a valid regular expression: {exc}") from None
    return patterns


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number carries."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


class Redactor:
    """Compiled rules; ``redact(text)`` and ``redact_content(attributes)``."""

    def __init__(self, rules: RedactionRules):
        self._rules = [(re.compile(_BUILTIN_PATTERNS[name]), _MUST_CONTAIN[name], _REPLACEMENTS[name])
                       for name in BUILTIN_RULES if name in rules.builtin]
        self._rules += [(re.compile(pattern), (), f"[{name.upper()}]") for name, pattern in rules.patterns]

    def redact(self, text: str) -> str:
        for pattern, must_contain, replacement in self._rules:
            if not must_contain or any(part in text for part in must_contain):
                text = pattern.sub(replacement, text)
        return text

    def redact_value(self, value):
        """Strings, and strings inside lists and maps (array and kvlist attributes)."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, list):
            return [self.redact_value(item) for item in value]
        if isinstance(value, dict):
            return {key: self.redact_value(item) for key, item in value.items()}
        return value

    def redact_content(self, attributes: dict) -> None:
        """Redact, in place, every content attribute of a span's attributes dict."""
        for key in content_keys(attributes):
            attributes[key] = self.redact_value(attributes[key])


def content_keys(keys: Iterable[str]) -> list[str]:
    return [key for key in keys if key in CONTENT_KEYS or key.startswith(CONTENT_PREFIXES)]


def _card_number(match: re.Match) -> str:
    digits = _NOT_DIGIT.sub("", match.group())
    return "[CARD_NUMBER]" if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group()


def _phone_number(match: re.Match) -> str:
    text = match.group()
    digits = _NOT_DIGIT.sub("", text)
    digits = digits[2:] if text.startswith("00") else digits
    return "[PHONE_NUMBER]" if 8 <= len(digits) <= 15 else text


_REPLACEMENTS = {"email": "[EMAIL]", "card_number": _card_number, "phone_number": _phone_number}
