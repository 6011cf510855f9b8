"""Alerts: rules over the jobs' metrics, a state machine per alert, email and webhook channels.

Entry points: ``run_alerts`` (the scheduler calls it after every job run),
``evaluate`` and ``deliver`` (its two halves), ``send_message`` (email, shared with
reports). See alerts/README.md.
"""
from alerts.delivery import deliver
from alerts.email import send_message
from alerts.engine import evaluate
from alerts.run import AlertRunResult, run_alerts

__all__ = ["AlertRunResult", "deliver", "evaluate", "run_alerts", "send_message"]
