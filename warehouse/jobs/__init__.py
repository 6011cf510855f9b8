"""Scheduled analytics over the warehouse: rollups, budget variance, retry inflation, drift, anomalies.

See README.md in this directory for what each job computes and the formulas used.
"""
