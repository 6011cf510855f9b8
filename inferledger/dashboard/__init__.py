"""The web dashboard of ``inferledger serve``: costs, variance, retries, drift, alerts, prices, decisions.

``mount_dashboard(app, config, book)`` adds the pages under ``/dashboard``; see README.md.
"""
from inferledger.dashboard.routes import mount_dashboard

__all__ = ["mount_dashboard"]
