"""A fake of the five vendors' analytics APIs, for `livestream-exporter --demo` and tests.

    app = create_app(Simulator(clock=fake_clock))
    config = demo_config("http://127.0.0.1:8080")

Each vendor lives under its own path prefix (see BASE_PATHS); `demo_config` builds the
exporter configuration pointing at them. Stream keys (DEMO_STREAMS) are what the control
methods take and equal the exporter's default `stream` label values.
"""

from __future__ import annotations

from .app import BASE_PATHS, SIMULATOR_KEY, create_app
from .constants import (
    CREATE_BEFORE_START,
    DEMO_CF_ACCOUNT,
    DEMO_CF_APP,
    DEMO_CF_TOKEN,
    DEMO_FERMION_KEY,
    DEMO_GJIRAFA_KEY,
    DEMO_SCENARIOS,
    DEMO_SFD_FZONE,
    DEMO_SFD_KEY_ID,
    DEMO_SFD_SECRET,
    DEMO_STREAMS,
    DEMO_TENCENT_APP_ID,
    DEMO_TENCENT_IDENTIFIER,
    DEMO_TENCENT_SECRET,
    DROP_AFTER,
    END_AFTER,
    ENDED_BEFORE,
    ENDED_DURATION,
    FAULT_KINDS,
    START_AFTER,
    TENCENT_DESTROY_AFTER_END,
    VENDORS,
)
from .democonfig import demo_config
from .ratelimit import RequestRecord
from .run import RunningSimulator, start_simulator
from .state import DEFAULT_LIMITS, Simulator

__all__ = [
    "BASE_PATHS",
    "CREATE_BEFORE_START",
    "DEFAULT_LIMITS",
    "DEMO_CF_ACCOUNT",
    "DEMO_CF_APP",
    "DEMO_CF_TOKEN",
    "DEMO_FERMION_KEY",
    "DEMO_GJIRAFA_KEY",
    "DEMO_SCENARIOS",
    "DEMO_SFD_FZONE",
    "DEMO_SFD_KEY_ID",
    "DEMO_SFD_SECRET",
    "DEMO_STREAMS",
    "DEMO_TENCENT_APP_ID",
    "DEMO_TENCENT_IDENTIFIER",
    "DEMO_TENCENT_SECRET",
    "DROP_AFTER",
    "ENDED_BEFORE",
    "ENDED_DURATION",
    "END_AFTER",
    "FAULT_KINDS",
    "SIMULATOR_KEY",
    "START_AFTER",
    "TENCENT_DESTROY_AFTER_END",
    "VENDORS",
    "RequestRecord",
    "RunningSimulator",
    "Simulator",
    "create_app",
    "demo_config",
    "start_simulator",
]
