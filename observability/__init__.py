"""Observability: cost, metrics, traces and access logs for every request."""
