"""Observability: the access log (and, later, metrics and the admin API)."""
