"""The monitoring mixin of livestream-exporter: Grafana dashboards and Prometheus rules, generated.

Settings in deploy/mixin/config.yaml; `python -m grafana.mixin` regenerates everything.
"""
