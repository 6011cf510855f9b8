"""Auditor access to the warehouse: decision queries, exports, one record in full, read-only SQL,
tenant scoping and the access log. See README.md in this folder.

Modules are imported directly (``warehouse.audit.sql``...); this package imports nothing, because
the catalog imports ``warehouse.audit.access_log`` for its view.
"""
