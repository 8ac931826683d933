"""The data model: samples, targets, typed errors, the metric catalog, time and windows.

The bottom layer: it imports nothing else of the exporter.
"""
