"""Fake Tencent TUILiveKit REST API: room stats and room list, UserSig verified."""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from exporter.signing import decode_usersig, tencent_sig_hmac

from .common import Call, Reply, VendorProfile, serve
from .curves import SimStream
from .state import Simulator

PREFIX = "/tencent"
_ROUTE = PREFIX + "/v4/live_engine_http_srv/{endpoint:get_room_stats|get_room_list}"
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


class Tencent(VendorProfile):
    name = "tencent"

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


def verify(sim: Simulator, profile: Tencent, query: Mapping[str, str]) -> Reply | None:
    """None when the query carries a valid, unexpired UserSig of a known SDKAppID."""
    try:
        app_id = int(query.get("sdkappid", ""))
    except ValueError:
        return profile.fail(SDKAPPID_INVALID, "SDKAppID is invalid")
    secret = sim.credentials.tencent_apps.get(app_id)
    if secret is None:
        return profile.fail(SDKAPPID_INVALID, "SDKAppID is invalid")
    identifier = query.get("identifier", "")
    try:
        doc = decode_usersig(query.get("usersig", ""))
        sig_time, expire, sig = doc["TLS.time"], doc["TLS.expire"], doc["TLS.sig"]
        if not isinstance(sig_time, int) or not isinstance(expire, int) or not isinstance(sig, str):
            raise ValueError("bad field types")
    except (ValueError, KeyError):
        return profile.fail(USERSIG_UNPARSABLE, "UserSig cannot be parsed")
    if doc.get("TLS.identifier") != identifier:
        return profile.fail(USERSIG_IDENTIFIER_MISMATCH, "identifier does not match the UserSig")
    if doc.get("TLS.sdkappid") != app_id:
        return profile.fail(USERSIG_SDKAPPID_MISMATCH, "SDKAppID does not match the UserSig")
    expected = tencent_sig_hmac(
        sdk_app_id=app_id, identifier=identifier, secret_key=secret, now=sig_time, expire=expire
    )
    if not hmac.compare_digest(expected, sig):
        return profile.fail(USERSIG_WRONG_KEY, "UserSig verification failed: wrong key")
    if sig_time + expire < sim.now():
        return profile.fail(USERSIG_EXPIRED, "UserSig expired, please generate a new one")
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


def room_list(sim: Simulator, profile: Tencent, body: Mapping[str, Any]) -> Reply:
    count = body.get("Count", 20)
    try:
        offset = _offset(str(body.get("Next") or ""))
    except ValueError:
        return profile.fail(INVALID_PARAMETERS, "Next is invalid")
    if not isinstance(count, int) or not 1 <= count <= _MAX_PAGE:
        return profile.fail(INVALID_PARAMETERS, f"Count must be 1..{_MAX_PAGE}")
    now = sim.now()
    rooms = sim.visible("tencent")
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
    return profile.ok({"RoomList": listed, "Next": _cursor(following) if following < len(rooms) else ""})


def add_routes(app: web.Application, sim: Simulator) -> None:
    profile = Tencent(sim)

    async def handle(request: web.Request) -> web.Response:
        endpoint = request.match_info["endpoint"]
        query = request.query
        refusal = verify(sim, profile, query)
        credential = query.get("sdkappid") or None
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            body = None
        room_id = body.get("RoomId") if isinstance(body, dict) else None
        streams = [room_id] if isinstance(room_id, str) else []

        def produce() -> Reply:
            if not isinstance(body, dict):
                return profile.fail(INVALID_PARAMETERS, "the body must be a JSON object")
            if endpoint == "get_room_list":
                return room_list(sim, profile, body)
            if not isinstance(room_id, str) or not room_id:
                return profile.fail(INVALID_PARAMETERS, "RoomId is required")
            room = sim.find("tencent", room_id)
            if room is None:
                return profile.fail(ROOM_NOT_FOUND, "Room does not exist. Please verify the Room ID.")
            return profile.ok(room_stats(room, sim.now()))

        return await serve(request, Call(profile, endpoint, credential, refusal, produce, streams))

    app.router.add_post(_ROUTE, handle)
