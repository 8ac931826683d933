"""A fake of the vendors' analytics APIs, for `livestream-exporter --demo` and tests.

    app = create_app(Simulator(clock=fake_clock.time, monotonic=fake_clock.monotonic, sleep=fake_clock.sleep))
    config = demo_config("http://127.0.0.1:8080")

Each vendor is one module of this package (`<vendor>.py`): its routes, answers, error
style, quirks, credentials, rate limits and demo streams, registered with `@register`.
Importing this package imports every one of its modules, which is what makes the vendors
known; adding a vendor is adding its module. Each vendor lives under its own path prefix
(BASE_PATHS); `demo_config` builds the exporter configuration pointing at them. Stream keys
(DEMO_STREAMS) are what the control methods take and equal the exporter's default `stream`
label values.

By default answers come at once and whole. Per vendor, `Simulator.set_latency` gives requests
an answer time with jitter (the vendor counts a request when it arrives, between send and
answer), `Simulator.set_pieces` sends answers in pieces, and the faults "cut" and "reset" end
a connection in the middle of an answer; `demo_simulator()` (what `--demo` runs) has each
vendor's typical values. `Simulator.add_streams` makes catalogs of thousands of streams.
"""

from __future__ import annotations

import importlib
import pkgutil

from .core import (
    FAULT_KINDS,
    Simulator,
    VendorSim,
    add_demo_troubles,
    demo_config,
    demo_simulator,
    register,
    unregister,
    vendor_classes,
)
from .limits import RequestRecord
from .network import Latency, Network, Pieces
from .run import RunningSimulator, start_simulator
from .scenarios import CREATE_BEFORE_START, DROP_AFTER, END_AFTER, ENDED_BEFORE, ENDED_DURATION, START_AFTER
from .server import SIMULATOR_KEY, create_app

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

# Computed from the registered vendors, in the order of their names.
VENDORS: tuple[str, ...] = tuple(cls.name for cls in vendor_classes())
# vendor -> path prefix: the exporter's base_url is http://HOST:PORT + prefix.
BASE_PATHS: dict[str, str] = {cls.name: cls.prefix for cls in vendor_classes()}
# vendor -> stream key -> scenario, in the order of the vendor's catalog.
DEMO_SCENARIOS: dict[str, dict[str, str]] = {cls.name: dict(cls.scenarios) for cls in vendor_classes()}
# vendor -> the demo stream keys.
DEMO_STREAMS: dict[str, list[str]] = {name: list(keys) for name, keys in DEMO_SCENARIOS.items()}

__all__ = [
    "BASE_PATHS",
    "CREATE_BEFORE_START",
    "DEMO_SCENARIOS",
    "DEMO_STREAMS",
    "DROP_AFTER",
    "ENDED_BEFORE",
    "ENDED_DURATION",
    "END_AFTER",
    "FAULT_KINDS",
    "SIMULATOR_KEY",
    "START_AFTER",
    "VENDORS",
    "Latency",
    "Network",
    "Pieces",
    "RequestRecord",
    "RunningSimulator",
    "Simulator",
    "VendorSim",
    "add_demo_troubles",
    "create_app",
    "demo_config",
    "demo_simulator",
    "register",
    "start_simulator",
    "unregister",
    "vendor_classes",
]
