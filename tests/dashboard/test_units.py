"""Pure parts of the dashboard: number formatting, chart pivots, the session cookie, the search form."""
from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from inferledger.auth import create_key, revoke_key
from inferledger.dashboard import format as fmt
from inferledger.dashboard.charts import pivot
from inferledger.dashboard.decisions import MAX_DAYS, parse_cursor, parse_search
from inferledger.dashboard.session import COOKIE_NAME, Refusal, Sessions, safe_next


@pytest.mark.parametrize("value, text", [
    (1234.5, "$1,234.50"), (0, "$0.00"), (0.42, "$0.42"), (0.042, "$0.042"), (0.05, "$0.05"),
    (0.004123, "$0.00412"), (-12.5, "-$12.50"), (None, "–"), (float("nan"), "–"), (Decimal("2.5"), "$2.50"),
])
def test_usd(value, text):
    assert fmt.usd(value) == text


def test_signed_and_percent_and_counts():
    assert (fmt.usd(7, signed=True), fmt.usd(-7, signed=True), fmt.usd(0, signed=True)) == ("+$7.00", "-$7.00", "$0.00")
    assert [fmt.pct(0.0541), fmt.pct(0.0541, 2), fmt.pct(0.404, 1, True), fmt.pct(None)] == [
        "5.4%", "5.41%", "+40.4%", "–"]
    assert [fmt.count(1234567), fmt.count(12.5), fmt.count(None), fmt.count(True)] == [
        "1,234,567", "12.50", "–", "–"]
    assert (fmt.number(0.25714), fmt.number(2.1e-05, 2)) == ("0.257", "2.1e-05")
    assert fmt.labels('{"model": "gpt-4o", "service": "a"}') == "model=gpt-4o, service=a"
    assert (fmt.labels("{}"), fmt.labels(None), fmt.labels("not json")) == ("(all)", "(all)", "not json")
    assert fmt.when(datetime(2026, 11, 3, 14, 5, 9, tzinfo=UTC), "second") == "2026-11-03 14:05:09"
    assert (fmt.when(date(2026, 11, 3)), fmt.when(None)) == ("2026-11-03", "–")
    assert (fmt.sign_class(3), fmt.sign_class(-1), fmt.sign_class(0)) == ("up", "down", "")


def test_pivot_keeps_the_top_series_and_sums_the_rest():
    rows = [{"x": day, "name": name, "v": value} for day in (1, 2)
            for name, value in (("a", 5.0), ("b", 3.0), ("c", 1.0), ("d", 0.5))]
    rows.append({"x": 3, "name": "a", "v": None})
    x, series = pivot(rows, "x", "name", "v", top=2)
    assert x == [1, 2, 3]
    assert series == {"a": [5.0, 5.0, 0.0], "b": [3.0, 3.0, 0.0], "other": [1.5, 1.5, 0.0]}
    _, kept = pivot(rows, "x", "name", "v", top=3)  # one left over is shown as itself, not as "other"
    assert list(kept) == ["a", "b", "c", "d"]


def test_session_cookie_is_signed_expires_and_follows_revocation(tmp_path):
    _, key = create_key(tmp_path, "auditor", "alice")
    sessions = Sessions(tmp_path, required=True, lifetime_s=60)
    principal, cookie = sessions.login(key)
    assert principal.name == "alice" and key not in cookie
    assert sessions.viewer({COOKIE_NAME: cookie}, {}).key_id == principal.key_id
    key_id, expires, signature = cookie.split(".")
    forged = f"{key_id}.{int(expires) + 3600}.{signature}"  # a longer life needs a new signature
    assert isinstance(sessions.viewer({COOKIE_NAME: forged}, {}), Refusal)
    other_server = Sessions(tmp_path, required=True)  # restart: a new secret
    assert isinstance(other_server.viewer({COOKIE_NAME: cookie}, {}), Refusal)
    expired = Sessions(tmp_path, required=True, lifetime_s=-1)
    assert isinstance(expired.viewer({COOKIE_NAME: expired.login(key)[1]}, {}), Refusal)
    revoke_key(tmp_path, principal.key_id)
    refused = sessions.viewer({COOKIE_NAME: cookie}, {})
    assert isinstance(refused, Refusal) and refused.status == 401
    assert sessions.login(key) == (None, "That API key is not valid (unknown, revoked or mistyped).")


def test_without_authentication_everyone_is_the_anonymous_admin(tmp_path):
    viewer = Sessions(tmp_path, required=False).viewer({}, {})
    assert (viewer.key_id, viewer.role, viewer.tenant) == ("anonymous", "admin", None)


@pytest.mark.parametrize("target, safe", [
    ("/dashboard/decisions?x=1", "/dashboard/decisions?x=1"), ("https://evil.example", "/dashboard"),
    ("//evil.example/dashboard", "/dashboard"), ("/dashboard\\@evil", "/dashboard"), (None, "/dashboard"),
    ("/api/v1/sql", "/dashboard"),
])
def test_safe_next(target, safe):
    assert safe_next(target) == safe


def test_search_form_defaults_limits_and_tenant_scope():
    today = date(2026, 11, 23)
    search, errors = parse_search({}, today, None)
    assert (search.date_from, search.date_to, errors) == (date(2026, 11, 17), today, [])
    search, errors = parse_search({"from": "2026-01-01", "to": "2026-11-23", "tenant": "b"}, today, "a")
    assert (today - search.date_from).days == MAX_DAYS - 1 and search.tenant == "a" and len(errors) == 1
    where = search.decision_filter(lambda raw: "p:" + raw)
    assert (where.time_from, where.time_to) == (datetime(2026, 8, 24, tzinfo=UTC), datetime(2026, 11, 24, tzinfo=UTC))
    assert parse_search({"subject": "c-1"}, today, None)[0].decision_filter(lambda raw: "p:" + raw).subject == "p:c-1"
    pseudonym = "ab" * 32
    assert parse_search({"subject": pseudonym.upper()}, today, None)[0].decision_filter(str).subject == pseudonym
    assert parse_search({"subject": pseudonym}, today, None)[0].api_url("csv") is None  # the API takes raw ids


def test_cursor_round_trip_and_garbage():
    start, trace_id, span_id = parse_cursor("1767225600000001." + "a" * 32 + "." + "b" * 16)
    assert start == datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC) and (trace_id, span_id) == ("a" * 32, "b" * 16)
    for garbage in ("", "x", "1.2.3", "1." + "A" * 32 + "." + "b" * 16, None):
        assert parse_cursor(garbage) is None
