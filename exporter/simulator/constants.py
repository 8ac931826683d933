"""Demo credentials, demo streams and scenario timings of the simulator.

The credentials are fake values that only the simulator accepts. Stream keys are the
identifiers the simulator's control API takes, and equal the exporter's default `stream`
label of each provider: gjirafa `{project_id}/{media}`, swiftfederation
`{domain}/{app}/{stream}`, fermion the session id, cloudflare the livestream id, tencent
the room id.
"""

from __future__ import annotations

from typing import Final

VENDORS: Final = ("gjirafa", "swiftfederation", "fermion", "cloudflare", "tencent")

# Fault kinds accepted by Simulator.inject.
FAULT_KINDS: Final = (
    "5xx",  # HTTP 5xx (default 503)
    "429",  # HTTP 429 with Retry-After
    "html",  # an HTML error page (default status 502; 200 possible)
    "truncated",  # the normal answer cut in the middle, status 200
    "slow",  # the normal answer after Simulator.slow_seconds
    "timeout",  # no answer until the client gives up (at most Simulator.hang_seconds)
    "auth",  # refuse the credentials as the vendor does
    "throttle200",  # vendor throttling answered with HTTP 200 (Tencent 60018, ...)
    "error200",  # a vendor failure answered with HTTP 200 (Gjirafa success:false, ...)
)

# Fake demo credentials, accepted by the simulator only.
DEMO_GJIRAFA_KEY: Final = "demo-gjirafa-api-key-7f3c9a51"
DEMO_SFD_KEY_ID: Final = "DemoSfdKey7Q2x9L"
DEMO_SFD_SECRET: Final = "demo-sfd-secret-4b1e8d2a9c7f6e5d"  # noqa: S105
DEMO_SFD_FZONE: Final = "SG"
DEMO_FERMION_KEY: Final = "demo-fermion-api-key-c0ffee42"
DEMO_CF_TOKEN: Final = "demo-cloudflare-api-token-5e2a9b7c"  # noqa: S105
DEMO_CF_ACCOUNT: Final = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
DEMO_CF_APP: Final = "7c4d1f0e-3b2a-4c5d-8e9f-0a1b2c3d4e5f"
DEMO_TENCENT_APP_ID: Final = 1400123456
DEMO_TENCENT_IDENTIFIER: Final = "administrator"
DEMO_TENCENT_SECRET: Final = "3f8a1c9e5b7d2f4a6c8e0b1d3f5a7c9e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f1a"  # noqa: S105

# Scenario timings, in seconds after the simulator starts (or after a stream starts).
DROP_AFTER: Final = 180.0  # "drop": viewers fall to a third
END_AFTER: Final = 600.0  # "ends": the stream stops
START_AFTER: Final = 120.0  # "starts": the stream goes live
CREATE_BEFORE_START: Final = 60.0  # cloudflare/tencent: the "starts" stream is created this much earlier
TENCENT_DESTROY_AFTER_END: Final = 300.0  # tencent: the ended room is destroyed (then 100004)
ENDED_BEFORE: Final = 300.0  # "ended": the stream stopped this long before the simulator started
ENDED_DURATION: Final = 1800.0  # "ended": how long it had been live

# "ended" (fermion and cloudflare, whose answers carry an end time) has ended before the
# simulator starts, so `livestream_ended_timestamp_seconds` shows from the first poll.
SCENARIOS: Final = ("rising", "falling", "drop", "ends", "starts", "ended")

# vendor -> stream key -> scenario. The order is the order of DEMO_STREAMS.
DEMO_SCENARIOS: Final[dict[str, dict[str, str]]] = {
    "gjirafa": {
        "vp-news/audio": "rising",
        "vp-news/video": "falling",
        "vp-sport/video": "drop",
        "vp-radio/audio": "ends",
        "vp-concert/video": "starts",
    },
    "swiftfederation": {
        "live.example.com/demoapp/main": "rising",
        "live.example.com/demoapp/backup": "falling",
        "live.example.com/demoapp/concert": "drop",
        "live.example.com/demoapp/webinar": "ends",
        "live.example.com/demoapp/late-show": "starts",
    },
    "fermion": {
        "session-algebra": "rising",
        "session-history": "falling",
        "session-physics": "drop",
        "session-chemistry": "ends",
        "session-biology": "starts",
        "session-geography": "ended",
    },
    "cloudflare": {
        "3fd739f4-3c41-456e-bfba-6ebd51e16d2d": "rising",
        "78dd0b50-4147-4bb8-88d3-2ccc2e98bff0": "falling",
        "a1c2e3f4-5b6d-4e8f-9a0b-1c2d3e4f5a6b": "drop",
        "b7d8e9f0-1a2b-4c3d-8e4f-5a6b7c8d9e0f": "ends",
        "c9e0f1a2-3b4c-4d5e-9f6a-7b8c9d0e1f2a": "starts",
        "d4f5a6b7-8c9d-4e0f-8a1b-2c3d4e5f6a7b": "ended",
    },
    "tencent": {
        "live_room_main": "rising",
        "live_room_music": "falling",
        "live_room_sports": "drop",
        "live_room_talk": "ends",
        "live_room_late": "starts",
    },
}

# vendor -> the demo stream keys (see the module docstring for their shape).
DEMO_STREAMS: Final[dict[str, list[str]]] = {vendor: list(keys) for vendor, keys in DEMO_SCENARIOS.items()}

# Base viewer counts of each scenario.
SCENARIO_BASE: Final[dict[str, float]] = {
    "rising": 120.0,
    "falling": 900.0,
    "drop": 1500.0,
    "ends": 80.0,
    "starts": 300.0,
    "ended": 250.0,
}

# SwiftFederation streams whose answers carry one malformed timestamp by default.
SFD_MALFORMED_DEFAULT: Final = ("live.example.com/demoapp/backup",)
# Cloudflare livestreams whose numbers (and `disabled`) arrive as strings.
CF_STRING_NUMBERS_DEFAULT: Final = ("78dd0b50-4147-4bb8-88d3-2ccc2e98bff0",)
