"""The HTTP side: /metrics, the landing page, health, readiness, reload, and web config."""
