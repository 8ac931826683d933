"""The exporter configuration (CONTRACT.md section 2) that polls a running simulator."""

from __future__ import annotations

from typing import Any

from .app import BASE_PATHS
from .constants import (
    DEMO_CF_ACCOUNT,
    DEMO_CF_APP,
    DEMO_CF_TOKEN,
    DEMO_FERMION_KEY,
    DEMO_GJIRAFA_KEY,
    DEMO_SFD_FZONE,
    DEMO_SFD_KEY_ID,
    DEMO_SFD_SECRET,
    DEMO_STREAMS,
    DEMO_TENCENT_APP_ID,
    DEMO_TENCENT_IDENTIFIER,
    DEMO_TENCENT_SECRET,
)

# Vendors with discovery get these many explicit targets; discovery finds the rest.
_EXPLICIT_WITH_DISCOVERY = 2
_PROTOCOLS = ("http-flv", "ll-hls", "hls/dash")


def _gjirafa_targets() -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []
    for index, key in enumerate(DEMO_STREAMS["gjirafa"]):
        project_id, media = key.split("/")
        targets.append({"project_id": project_id, "media": media, "interval_length": 1 if index == 0 else 5})
    return targets


def _sfd_targets() -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []
    for index, key in enumerate(DEMO_STREAMS["swiftfederation"][:_EXPLICIT_WITH_DISCOVERY]):
        domain, app, stream = key.split("/")
        targets.append(
            {
                "domain": domain,
                "app": app,
                "stream": stream,
                "region": "SG",
                "protocol": _PROTOCOLS[index % len(_PROTOCOLS)],
            }
        )
    return targets


def demo_config(root_url: str) -> dict[str, Any]:
    """A configuration dict (as loaded from YAML) polling the simulator at `root_url`."""
    root = root_url.rstrip("/")
    return {
        "global": {"interval": "15s", "timeout": "5s", "stale_after": "5m"},
        "sources": [
            {
                "name": "demo-gjirafa",
                "provider": "gjirafa",
                "base_url": root + BASE_PATHS["gjirafa"],
                "credentials": {"api_key": DEMO_GJIRAFA_KEY},
                "targets": _gjirafa_targets(),
            },
            {
                "name": "demo-swiftfederation",
                "provider": "swiftfederation",
                "base_url": root + BASE_PATHS["swiftfederation"],
                "fzone": DEMO_SFD_FZONE,
                "discover": True,
                "credentials": {"access_key_id": DEMO_SFD_KEY_ID, "access_key_secret": DEMO_SFD_SECRET},
                "targets": _sfd_targets(),
            },
            {
                "name": "demo-fermion",
                "provider": "fermion",
                "base_url": root + BASE_PATHS["fermion"],
                "batch_size": 2,
                "credentials": {"api_key": DEMO_FERMION_KEY},
                "targets": [{"live_event_session_id": key} for key in DEMO_STREAMS["fermion"]],
            },
            {
                "name": "demo-cloudflare",
                "provider": "cloudflare",
                "base_url": root + BASE_PATHS["cloudflare"],
                "account_id": DEMO_CF_ACCOUNT,
                "app_id": DEMO_CF_APP,
                "discover": True,
                "credentials": {"api_token": DEMO_CF_TOKEN},
                "targets": [
                    {"livestream_id": key} for key in DEMO_STREAMS["cloudflare"][:_EXPLICIT_WITH_DISCOVERY]
                ],
            },
            {
                "name": "demo-tencent",
                "provider": "tencent",
                "base_url": root + BASE_PATHS["tencent"],
                "discover": True,
                "credentials": {
                    "sdk_app_id": DEMO_TENCENT_APP_ID,
                    "identifier": DEMO_TENCENT_IDENTIFIER,
                    "secret_key": DEMO_TENCENT_SECRET,
                },
                "targets": [{"room_id": key} for key in DEMO_STREAMS["tencent"][:_EXPLICIT_WITH_DISCOVERY]],
            },
        ],
    }
