"""Tools that write the committed deployment artifacts from their single sources.

Kept apart from `exporter` (nothing here runs in the daemon) and linted like it.
"""
