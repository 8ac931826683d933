"""The demo scenarios every vendor shares: their names, timings, base viewers and titles.

A vendor's catalog (`VendorSim.scenarios`) gives each of its demo streams one of these
scenarios; the vendor's viewer scale multiplies the scenario's base viewers.
"""

from __future__ import annotations

from typing import Final

# Scenario timings, in seconds after the simulator starts (or after a stream starts).
DROP_AFTER: Final = 180.0  # "drop": viewers fall to a third
END_AFTER: Final = 600.0  # "ends": the stream stops
START_AFTER: Final = 120.0  # "starts": the stream goes live
CREATE_BEFORE_START: Final = 60.0  # a stream created ahead of its session exists this much earlier
ENDED_BEFORE: Final = 300.0  # "ended": the stream stopped this long before the simulator started
ENDED_DURATION: Final = 1800.0  # "ended": how long it had been live

# Base viewer counts of each scenario. "ended" has ended before the simulator starts, so a
# vendor whose answers carry an end time shows `livestream_ended_timestamp_seconds` from the
# first poll; "steady" is the scenario of a stream started by hand.
SCENARIO_BASE: Final[dict[str, float]] = {
    "rising": 120.0,
    "falling": 900.0,
    "drop": 1500.0,
    "ends": 80.0,
    "starts": 300.0,
    "ended": 250.0,
    "steady": 100.0,
}

# The demo scenarios (every scenario but "steady").
SCENARIOS: Final = tuple(name for name in SCENARIO_BASE if name != "steady")

# Display names of the streams of each scenario.
TITLES: Final[dict[str, str]] = {
    "rising": "Morning Show",
    "falling": "Late Night Rerun",
    "drop": "Championship Final",
    "ends": "Weekly Q&A",
    "starts": "Evening Concert",
    "ended": "Opening Keynote",
    "steady": "Pop-up Stream",
}
