"""Dashboards: the Flask blueprint, chart builders and vendored assets.

They arrive with the dashboards issue; this package is a placeholder until then.
"""
