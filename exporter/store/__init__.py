"""The store of the latest snapshot of every target, and its exposition on /metrics."""
