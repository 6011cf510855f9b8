"""The weekly cost-variance report: figures against the hand-computed ones in data.py, text golden, no-data forms."""
from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from reports.weekly import IsoWeek, build_weekly
from reports.weekly_email import build_message, render_text
from tests.reports.conftest import check_golden, report_config
from tests.reports.data import REPORT_NOW, land_weekly

W47 = IsoWeek(2026, 47)


@pytest.fixture(scope="module")
def weekly(weekly_dir):
    config = report_config(weekly_dir)
    return build_weekly(weekly_dir, config.reports, config.budgets, W47, REPORT_NOW), config


def test_iso_weeks_parse_and_default_to_the_last_complete_week():
    assert IsoWeek.parse("2026-W47") == W47
    assert (W47.first_day, W47.last_day) == (date(2026, 11, 16), date(2026, 11, 22))
    assert IsoWeek.last_complete(REPORT_NOW) == W47  # Monday 08:00 after the week
    assert IsoWeek.last_complete(datetime(2026, 11, 22, 23, 59, tzinfo=UTC)) == IsoWeek(2026, 46)
    assert IsoWeek.parse("2021-W01").first_day == date(2021, 1, 4)  # ISO year differs from the calendar year
    with pytest.raises(ValueError, match="use the ISO form YYYY-Www"):
        IsoWeek.parse("2026-47")
    with pytest.raises(ValueError, match="2026 has no ISO week 54"):
        IsoWeek.parse("2026-W54")


def test_spend_and_week_over_week(weekly):
    report, _ = weekly
    assert report.spend["current"] == pytest.approx(115.5)
    assert report.spend["previous"] == pytest.approx(77.0)
    assert report.spend["change_pct"] == pytest.approx(0.5)
    assert report.spend["requests"] == 7 * 37 and report.spend["previous_requests"] == 7 * 30


def test_subject_carries_the_headline_against_the_budget(weekly):
    report, _ = weekly
    # $115.50 against W47's share of $300 in a 30-day month: 7 x $10 = $70, so +65%.
    assert report.headline_budget["week_budget"] == pytest.approx(70.0)
    assert report.headline_budget["vs_budget"] == pytest.approx(0.65)
    assert report.subject == "AI inference $116, +65% vs budget (2026-W47)"


def test_movers_unpriced_and_human_review(weekly):
    report, _ = weekly
    models = {r["key"]: r for r in report.movers["model"]}
    assert models["gpt-4o"]["change"] == pytest.approx(14.0) and models["gpt-4o"]["change_pct"] == pytest.approx(0.2)
    assert models["claude-3-5-sonnet"]["previous"] == 0 and models["claude-3-5-sonnet"]["change_pct"] is None
    assert [r["key"] for r in report.movers["service"]] == ["support", "fraud"]  # +28.00, +10.50
    assert report.movers["tenant"][0]["key"] == "acme" and report.movers["tenant"][0]["change"] == pytest.approx(14.0)
    assert report.unpriced["requests"] == 14 and report.unpriced["share"] == pytest.approx(14 / 259)
    assert report.unpriced["models"] == [{"provider": "acme-ai", "model": "mystery-llm", "requests": 14}]
    review = report.human_review
    assert review["review_cost"] == pytest.approx(10.5) and review["inference_cost"] == pytest.approx(105.0)
    assert review["review_share"] == pytest.approx(10.5 / 115.5)
    assert [r["key"] for r in report.movers["model"]][:3] == ["claude-3-5-sonnet", "gpt-4o", "(no model)"]


def test_job_sections(weekly):
    report, _ = weekly
    budgets = {b["budget"]: b for b in report.jobs.budgets}
    assert budgets["all-ai"]["days"] == 7 and budgets["all-ai"]["actual_usd"] == pytest.approx(14 * 11 + 7 * 16.5)
    unit = budgets["fraud-unit"]
    assert unit["week_units"] == 140 and unit["week_unit_cost_usd"] == pytest.approx(0.05)
    assert unit["week_unit_cost_ratio"] == pytest.approx(1.25)
    change = report.jobs.change["total"]
    effects = sum(change[f"{f}_effect_usd"] for f in ("volume", "mix", "rate", "price"))
    assert effects == pytest.approx(change["change_usd"]) == pytest.approx(38.5)
    assert [m["model"] for m in report.jobs.change["models"]][:2] == ["claude-3-5-sonnet", "gpt-4o"]
    assert report.jobs.savings["cache_savings_usd"] == pytest.approx(2.1)
    drift = report.jobs.drift
    assert drift["checked"] == 3 and [r["verdict"] for r in drift["flagged"]] == ["major", "minor"]
    assert [e["event"] for e in report.jobs.alerts["events"]] == ["firing"]  # the reminder is not listed
    retries = report.jobs.retries
    assert retries["total"]["wasted_cost_usd"] == pytest.approx(8.4)
    assert retries["total"]["inflation"] == pytest.approx(8.4 / 98)
    assert [r["model"] for r in retries["rows"]] == ["gpt-4o"] and retries["rows"][0]["inflation"] == pytest.approx(0.1)
    assert report.jobs.missing == {}
    assert len(report.jobs.burn["all-ai"]) == 22  # Nov 1-22 of the month the week ends in


def test_plain_text_part_matches_golden(weekly):
    report, config = weekly
    check_golden("weekly.txt", render_text(report, config.reports))


def test_message_is_multipart_with_every_chart_inline(weekly):
    report, config = weekly
    message = build_message(report, config.reports, ["finance@example.com"])
    assert message.get_content_type() == "multipart/alternative"
    text, related = message.get_payload()
    assert text.get_content_type() == "text/plain" and related.get_content_type() == "multipart/related"
    html, *images = related.get_payload()
    assert html.get_content_type() == "text/html"
    assert [image.get_content_type() for image in images] == ["image/png", "image/png"]
    body = html.get_content()
    for image in images:
        assert image.get_payload(decode=True).startswith(b"\x89PNG\r\n\x1a\n")
        assert image.get_content_disposition() == "inline"
        assert f'src="cid:{image["Content-ID"].strip("<>")}"' in body
    assert "<script" not in body.lower() and "http://" not in body and "https://" not in body


def test_a_week_without_data_or_jobs_still_renders(tmp_path):
    """An empty warehouse: every section says why it is empty, nothing raises."""
    data_dir = tmp_path / "data"
    land_weekly(data_dir)  # records exist, but no job has run and W50 has none of them
    config = report_config(data_dir)
    report = build_weekly(data_dir, config.reports, config.budgets, IsoWeek(2026, 50),
                          datetime(2026, 12, 14, 8, tzinfo=UTC))
    text = render_text(report, config.reports)
    assert report.subject == "AI inference $0.00, no spend the week before (2026-W50)"
    assert "Budgets: not computed for this week: run `inferledger jobs run variance`" in text
    assert "Decomposition not computed for this week" in text and "Every request of the week has a price." in text
    assert "Service: no spend in either week." in text
    message = build_message(report, config.reports, ["a@example.com"])
    assert len(message.get_payload()[1].get_payload()) == 2  # HTML + the trend chart; no budget burn to draw


def test_a_week_in_progress_is_marked_as_preview(weekly_dir):
    config = report_config(weekly_dir)
    report = build_weekly(weekly_dir, config.reports, [], W47, datetime(2026, 11, 20, 12, tzinfo=UTC))
    assert report.subject.endswith("(2026-W47, week not over yet)")
    assert "vs last week" in report.subject  # no budgets given: compared with the week before
    assert "Preview: the week has not ended yet" in render_text(report, config.reports)
