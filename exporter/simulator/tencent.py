"""Fake Tencent TUILiveKit REST API: room stats and room list, UserSig verified."""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from aiohttp import web

from exporter.providers.signing import decode_usersig, tencent_sig_hmac

from .common import Reply
from .core import Catalog, Limits, VendorSim, register
from .curves import SimStream
from .pipeline import Call, serve
from .scenarios import CREATE_BEFORE_START

# Fake demo credentials, accepted by the simulator only.
DEMO_APP_ID: Final = 1400123456
DEMO_IDENTIFIER: Final = "administrator"
DEMO_SECRET: Final = "3f8a1c9e5b7d2f4a6c8e0b1d3f5a7c9e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f1a"  # noqa: S105
DESTROY_AFTER_END: Final = 300.0  # an ended room is destroyed this long after (then 100004)
_MAX_PAGE = 100

# Error codes (HTTP status is always 200).
USERSIG_EXPIRED = 70001
USERSIG_UNPARSABLE = 70003
USERSIG_WRONG_KEY = 70009
USERSIG_IDENTIFIER_MISMATCH = 70013
USERSIG_SDKAPPID_MISMATCH = 70014
SDKAPPID_INVALID = 60006
FREQUENCY_LIMIT = 60018
INTERNAL_ERROR = 100001
INVALID_PARAMETERS = 100002
ROOM_NOT_FOUND = 100004


@register
class Tencent(VendorSim):
    """TUILiveKit REST API: UserSig in the query, answers always HTTP 200 with an error code;
    100 room-stats and 10 room-list requests a second."""

    name = "tencent"
    prefix = "/tencent"
    limits: ClassVar[Limits] = {"get_room_stats": [(100, 1.0)], "get_room_list": [(10, 1.0)]}
    scale = 3.0
    demo_latency = (0.25, 0.1)
    list_endpoints: ClassVar[frozenset[str]] = frozenset({"get_room_list"})
    scenarios: ClassVar[Catalog] = {  # stream key: the room id
        "live_room_main": "rising",
        "live_room_music": "falling",
        "live_room_sports": "drop",
        "live_room_talk": "ends",
        "live_room_late": "starts",
    }

    apps: dict[int, str]  # accepted SDKAppID -> its secret key

    def reset(self) -> None:
        super().reset()
        self.apps = {DEMO_APP_ID: DEMO_SECRET}

    @classmethod
    def stream_key(cls, n: int) -> str:
        """A room id (at most 48 characters)."""
        return f"live_room_{n:06d}"

    def adjust_demo_stream(self, stream: SimStream, scenario: str) -> None:
        session = stream.sessions[0]
        if scenario == "starts":  # the room exists before it goes live
            stream.created_at = session.start - CREATE_BEFORE_START
        elif scenario == "ends" and session.end is not None:
            stream.removed_at = session.end + DESTROY_AFTER_END

    @classmethod
    def demo_fields(cls) -> dict[str, Any]:
        return {
            "discover": True,
            "credentials": {
                "sdk_app_id": DEMO_APP_ID,
                "identifier": DEMO_IDENTIFIER,
                "secret_key": DEMO_SECRET,
            },
            "targets": [{"room_id": key} for key in cls.demo_keys(discover=True)],
        }

    def error_body(self, status: int, code: str, message: str) -> Any:
        return {
            "ActionStatus": "FAIL",
            "ErrorCode": int(code) if code.isdigit() else INTERNAL_ERROR,
            "ErrorInfo": message,
            "RequestId": self.request_id(),
        }

    def request_id(self) -> str:
        return f"Id-{self.sim.generation:04x}{self.sim.request_counter:08x}-O-Seq-{self.sim.request_counter}"

    def fail(self, code: int, message: str) -> Reply:
        return self.error(200, str(code), message)

    def over_limit(self, retry_after: float) -> Reply:
        return self.fail(FREQUENCY_LIMIT, "request too frequent, please try again later")

    def auth_refusal(self, code: int | None) -> Reply:
        return self.fail(code or USERSIG_EXPIRED, "UserSig expired, please generate a new one")

    def throttle200(self, code: int | None) -> Reply:
        return self.fail(code or FREQUENCY_LIMIT, "request too frequent, please try again later")

    def error200(self, code: int | None) -> Reply:
        return self.fail(code or INTERNAL_ERROR, "Internal server error. Please retry.")

    def ok(self, response: dict[str, Any]) -> Reply:
        body = {"ActionStatus": "OK", "ErrorInfo": "", "ErrorCode": 0, "RequestId": self.request_id()}
        body["Response"] = response
        return Reply(200, body)

    def add_routes(self, app: web.Application) -> None:

        async def handle(request: web.Request) -> web.StreamResponse:
            endpoint = request.match_info["endpoint"]
            query = request.query
            refusal = verify(self, query)
            credential = query.get("sdkappid") or None
            try:
                body = json.loads(await request.read() or b"{}")
            except ValueError:
                body = None
            room_id = body.get("RoomId") if isinstance(body, dict) else None
            streams = [room_id] if isinstance(room_id, str) else []

            def produce() -> Reply:
                if not isinstance(body, dict):
                    return self.fail(INVALID_PARAMETERS, "the body must be a JSON object")
                if endpoint == "get_room_list":
                    return room_list(self, body)
                if not isinstance(room_id, str) or not room_id:
                    return self.fail(INVALID_PARAMETERS, "RoomId is required")
                room = self.find(room_id)
                if room is None:
                    return self.fail(ROOM_NOT_FOUND, "Room does not exist. Please verify the Room ID.")
                return self.ok(room_stats(room, self.sim.now()))

            return await serve(request, Call(self, endpoint, credential, refusal, produce, streams))

        app.router.add_post(
            self.prefix + "/v4/live_engine_http_srv/{endpoint:get_room_stats|get_room_list}", handle
        )


def verify(vendor: Tencent, query: Mapping[str, str]) -> Reply | None:
    """None when the query carries a valid, unexpired UserSig of a known SDKAppID."""
    try:
        app_id = int(query.get("sdkappid", ""))
    except ValueError:
        return vendor.fail(SDKAPPID_INVALID, "SDKAppID is invalid")
    secret = vendor.apps.get(app_id)
    if secret is None:
        return vendor.fail(SDKAPPID_INVALID, "SDKAppID is invalid")
    identifier = query.get("identifier", "")
    try:
        doc = decode_usersig(query.get("usersig", ""))
        sig_time, expire, sig = doc["TLS.time"], doc["TLS.expire"], doc["TLS.sig"]
        if not isinstance(sig_time, int) or not isinstance(expire, int) or not isinstance(sig, str):
            raise ValueError("bad field types")
    except (ValueError, KeyError):
        return vendor.fail(USERSIG_UNPARSABLE, "UserSig cannot be parsed")
    if doc.get("TLS.identifier") != identifier:
        return vendor.fail(USERSIG_IDENTIFIER_MISMATCH, "identifier does not match the UserSig")
    if doc.get("TLS.sdkappid") != app_id:
        return vendor.fail(USERSIG_SDKAPPID_MISMATCH, "SDKAppID does not match the UserSig")
    expected = tencent_sig_hmac(
        sdk_app_id=app_id, identifier=identifier, secret_key=secret, now=sig_time, expire=expire
    )
    if not hmac.compare_digest(expected, sig):
        return vendor.fail(USERSIG_WRONG_KEY, "UserSig verification failed: wrong key")
    if sig_time + expire < vendor.sim.now():
        return vendor.fail(USERSIG_EXPIRED, "UserSig expired, please generate a new one")
    return None


def room_stats(stream: SimStream, now: float) -> dict[str, int]:
    stream.advance(now)
    watched = stream.viewer_seconds
    gifts = int(watched // 900)
    return {
        "TotalViewers": stream.peak_viewers(now) + int(watched // 600),
        "TotalGiftsSent": gifts,
        "TotalGiftCoins": gifts * 50,
        "TotalUniqueGiftSenders": (gifts + 2) // 3,
        "TotalLikesReceived": int(watched // 20),
        "TotalMsgCount": int(watched // 120),
    }


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode("ascii")


def _offset(cursor: str) -> int:
    if not cursor:
        return 0
    text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")
    if not text.startswith("offset:"):
        raise ValueError("bad cursor")
    return int(text.removeprefix("offset:"))


def room_list(vendor: Tencent, body: Mapping[str, Any]) -> Reply:
    count = body.get("Count", 20)
    try:
        offset = _offset(str(body.get("Next") or ""))
    except ValueError:
        return vendor.fail(INVALID_PARAMETERS, "Next is invalid")
    if not isinstance(count, int) or not 1 <= count <= _MAX_PAGE:
        return vendor.fail(INVALID_PARAMETERS, f"Count must be 1..{_MAX_PAGE}")
    now = vendor.sim.now()
    rooms = vendor.visible()
    page = rooms[offset : offset + count]
    listed = [
        {
            "RoomId": room.key,
            "RoomName": room.attrs.get("name", room.key),
            "Owner_Account": f"host_{room.key}",
            "CreateTime": int(room.created_at),
            "ActivityStatus": 1 if room.is_live(now) else 0,
            "ViewCount": room_stats(room, now)["TotalViewers"],
        }
        for room in page
    ]
    following = offset + len(page)
    return vendor.ok({"RoomList": listed, "Next": _cursor(following) if following < len(rooms) else ""})
