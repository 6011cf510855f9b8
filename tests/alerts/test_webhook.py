"""Webhooks against a real HTTP server on loopback: payloads, signatures checked independently, Slack format."""
from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta

from alerts.run import run_alerts
from tests.alerts.conftest import T0, alert_config, put_metric

H = timedelta(hours=1)
SECRET = "whsec-test-3f9a"
DRIFT_RULE = {"name": "score-drift", "metric": "drift.score_psi", "verdict": ["major"], "channels": ["ops"]}


def hook(receiver, **extra):
    return {"name": "ops", "url": receiver.url, **extra}


def drift_metric(data, verdict="major", value=0.31):
    put_metric(data, "drift.score_psi", value, {"service": "fraud", "model": "gpt-x", "model_version": "7"},
               verdict=verdict, threshold=0.25, job="drift",
               detail={"test": "psi", "statistic": value, "p_value": 0.0004, "n_reference": 1800, "n_current": 950})


def signed_drift_alert(tmp_path, receiver, monkeypatch):
    """A major score drift delivered to ``receiver`` signed with SECRET; returns the one request."""
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    data = tmp_path / "data"
    config = alert_config(data, alerts__use_default_rules=False, alerts__rules=[DRIFT_RULE],
                          webhooks=[hook(receiver, secret_env="TEST_HOOK_SECRET")])
    drift_metric(data)
    result = run_alerts(data, config, T0 + H)
    assert (result.notifications, result.sent) == (1, 1)
    [request] = receiver.requests
    return request


def test_signed_json_payload_verifies_with_an_independent_hmac(tmp_path, http_receiver, monkeypatch):
    request = signed_drift_alert(tmp_path, http_receiver, monkeypatch)
    assert request.path == "/hook/secret-token" and request.headers["Content-Type"] == "application/json"
    timestamp = request.headers["X-Inferledger-Timestamp"]
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Inferledger-Signature"] == f"sha256={expected}"
    assert request.headers["X-Inferledger-Event"] == "firing"
    payload = json.loads(request.body)
    assert payload["version"] == 1 and payload["kind"] == "firing"
    alert = payload["alert"]
    assert request.headers["X-Inferledger-Delivery"] == alert["notification_id"]
    assert (alert["rule"], alert["metric"], alert["verdict"], alert["value"]) == ("score-drift", "drift.score_psi", "major", 0.31)
    assert alert["labels"] == {"model": "gpt-x", "model_version": "7", "service": "fraud"}
    assert alert["threshold"] == 0.25 and alert["detail"]["p_value"] == 0.0004
    assert alert["since"] == "2026-03-02T01:00:00+00:00" and alert["window_end"] == "2026-03-03T00:00:00+00:00"
    assert payload["text"].splitlines()[:2] == [
        "FIRING: score-drift (warning) model=gpt-x, model_version=7, service=fraud",
        "verdict major, since 2026-03-02 01:00 UTC"]
    assert "p-value 0.0004" in payload["text"] and "test psi, statistic 0.31" in payload["text"]


def test_tampered_body_fails_verification(tmp_path, http_receiver, monkeypatch):
    """The verification recipe from alerts/README.md accepts the real body and rejects a changed one."""
    request = signed_drift_alert(tmp_path, http_receiver, monkeypatch)
    verify = _readme_verifier()
    headers = request.headers
    assert verify(SECRET.encode(), headers, request.body, now=int(headers["X-Inferledger-Timestamp"]))
    assert not verify(SECRET.encode(), headers, request.body.replace(b"major", b"minor"),
                      now=int(headers["X-Inferledger-Timestamp"]))
    assert not verify(SECRET.encode(), headers, request.body, now=int(headers["X-Inferledger-Timestamp"]) + 600)


def test_slack_format_and_resolution(tmp_path, http_receiver):
    data = tmp_path / "data"
    config = alert_config(data, alerts__use_default_rules=False, alerts__rules=[DRIFT_RULE],
                          alerts__dashboard_url="https://ledger.example.com", webhooks=[hook(http_receiver, format="slack")])
    drift_metric(data)
    run_alerts(data, config, T0 + H)
    drift_metric(data, verdict="none", value=0.02)
    run_alerts(data, config, T0 + 2 * H)
    fired, resolved = [json.loads(r.body) for r in http_receiver.requests]
    assert "X-Inferledger-Signature" not in http_receiver.requests[0].headers  # no secret_env: unsigned
    assert set(fired) == {"text", "blocks"}
    assert [block["type"] for block in fired["blocks"]] == ["header", "section", "context"]
    assert fired["blocks"][0]["text"] == {"type": "plain_text", "text": "FIRING: score-drift (warning)"}
    assert fired["text"].startswith("*FIRING* score-drift (warning)")
    assert "<https://ledger.example.com/dashboard/drift|Open the dashboard>" in fired["text"]
    assert fired["blocks"][1]["text"] == {"type": "mrkdwn", "text": fired["text"]}
    assert resolved["blocks"][0]["text"]["text"] == "RESOLVED: score-drift (warning)"
    assert resolved["text"].splitlines()[1] == "verdict none, not major, fired 2026-03-02 01:00 UTC"


def _readme_verifier():
    """The Python snippet of alerts/README.md, executed as documented."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "alerts" / "README.md").read_text()
    snippet = readme.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(snippet, namespace)  # noqa: S102 - our own documentation
    return namespace["verify"]
