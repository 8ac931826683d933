"""The polling engine: budgets, the HTTP client, and one runner per source.

It reports what it learns through `PollSink` (the store implements it), so it knows
nothing of how results are kept or exposed.
"""
