"""Tencent TUILiveKit room statistics, with a UserSig the exporter generates.

`POST https://{domain}/v4/live_engine_http_srv/get_room_stats?sdkappid=&identifier=&usersig=&random=&contenttype=json`

    livestream_viewers_total     TotalViewers (cumulative)
    livestream_messages_total    TotalMsgCount
    livestream_likes_total       TotalLikesReceived
    livestream_gifts_total       TotalGiftsSent
    livestream_gift_coins_total  TotalGiftCoins
    livestream_gift_senders      TotalUniqueGiftSenders

The API always answers HTTP 200; `ErrorCode` says what happened: 60007, 60011, 60018,
60019 and 70050 are throttling (back off), 70001 means the UserSig expired (a new one is
made and the request retried once), 100004 means the room is gone (its series removed).
The UserSig (TLS sig v2) is valid for a day and renewed an hour before it expires; it is
registered with the log redactor, since it is a credential.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError

from exporter.config.registry import register
from exporter.config.schema import CredentialsBase, DiscoveringSource, Secret, SourceBase, TargetBase
from exporter.model.errors import AuthError, GoneError, ParseError, ThrottledError, UpstreamError
from exporter.model.redaction import REDACTOR
from exporter.model.samples import Origin, Outcome, Sample, Target
from exporter.model.windows import Window
from exporter.providers.base import Provider
from exporter.providers.parse import count, number, obj, sendable
from exporter.providers.signing import tencent_usersig

REGION_HOSTS = {
    "china": "console.tim.qq.com",
    "singapore": "adminapisgp.im.qcloud.com",
    "usa": "adminapiusa.im.qcloud.com",
    "indonesia": "adminapiidn.im.qcloud.com",
    "korea": "adminapikr.im.qcloud.com",
    "japan": "adminapijpn.im.qcloud.com",
    "germany": "adminapiger.im.qcloud.com",
}
SERVICE = "/v4/live_engine_http_srv"
USERSIG_LIFETIME = 86400
USERSIG_RENEW_BEFORE = 3600
THROTTLING = frozenset({60007, 60011, 60018, 60019, 70050})
USERSIG_EXPIRED = 70001
AUTH_CODES = frozenset({60006, 70003, 70009, 70013, 70014, 70016, 70020, 70052})
ROOM_GONE = 100004
RETRYABLE = frozenset({100001})
LIST_PAGE = 20
MAX_PAGES = 1000

COUNTS = (
    ("livestream_viewers_total", "TotalViewers"),
    ("livestream_messages_total", "TotalMsgCount"),
    ("livestream_likes_total", "TotalLikesReceived"),
    ("livestream_gifts_total", "TotalGiftsSent"),
    ("livestream_gift_coins_total", "TotalGiftCoins"),
    ("livestream_gift_senders", "TotalUniqueGiftSenders"),
)


class TencentCredentials(CredentialsBase):
    sdk_app_id: int = Field(gt=0)
    identifier: str = Field(min_length=1)
    secret_key: Secret


class TencentTarget(TargetBase):
    room_id: str = Field(min_length=1, max_length=48)

    def key(self) -> str:
        return self.room_id


class TencentSource(DiscoveringSource):
    credentials: TencentCredentials
    targets: tuple[TencentTarget, ...] = ()
    region: Literal["china", "singapore", "usa", "indonesia", "korea", "japan", "germany"] = "china"


class _UserSigExpired(AuthError):
    """70001: made anew and retried once before it counts as an auth failure."""


@register
class Tencent(Provider[TencentSource, TencentTarget]):
    name = "tencent"
    Source = TencentSource
    default_rate_limits: ClassVar[Mapping[str, tuple[Window, ...]]] = {
        "default": (Window(100, 1.0),),
        "list": (Window(10, 1.0),),
    }
    discovery_bucket = "list"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._usersig: str | None = None
        self._usersig_expires = 0.0

    @classmethod
    def base_url_for(cls, source: SourceBase) -> str | None:
        region = source.region if isinstance(source, TencentSource) else "china"
        return f"https://{REGION_HOSTS[region]}"

    def usersig(self, *, renew: bool = False) -> str:
        """The current UserSig, made anew when asked or within an hour of expiring."""
        now = self.clock.time()
        if renew or self._usersig is None or now >= self._usersig_expires - USERSIG_RENEW_BEFORE:
            c = self.source.credentials
            self._usersig = tencent_usersig(
                sdk_app_id=c.sdk_app_id,
                identifier=c.identifier,
                secret_key=c.secret_key.get_secret_value(),
                now=int(now),
                expire=USERSIG_LIFETIME,
            )
            self._usersig_expires = int(now) + USERSIG_LIFETIME
            REDACTOR.set_dynamic(f"tencent-usersig:{self.source.name}", self._usersig)
        return self._usersig

    async def _call(self, action: str, body: Mapping[str, Any], bucket: str = "default") -> Mapping[str, Any]:
        """One API call; renews the UserSig and retries once on 70001."""
        try:
            return await self._call_once(action, body, bucket, renew=False)
        except _UserSigExpired:
            self.log.info("UserSig expired early; making a new one and retrying once")
            try:
                return await self._call_once(action, body, bucket, renew=True)
            except _UserSigExpired:
                raise AuthError(
                    f"{action}: the vendor keeps refusing the UserSig (ErrorCode {USERSIG_EXPIRED})"
                ) from None

    async def _call_once(
        self, action: str, body: Mapping[str, Any], bucket: str, *, renew: bool
    ) -> Mapping[str, Any]:
        c = self.source.credentials
        params = {
            "sdkappid": str(c.sdk_app_id),
            "identifier": c.identifier,
            "usersig": self.usersig(renew=renew),
            "random": str(random.randint(0, 4294967295)),
            "contenttype": "json",
        }
        r = await self.http.request(
            "POST",
            f"{self.base_url}{SERVICE}/{action}",
            endpoint=action,
            bucket=bucket,
            params=params,
            json=dict(body),
        )
        doc = obj(r.json(), "answer")
        code = doc.get("ErrorCode", 0)
        if not isinstance(code, int):
            code = int(number(code, "ErrorCode"))
        if code == 0:
            return doc
        if code in THROTTLING:
            raise ThrottledError(f"{action}: the vendor says too frequent (ErrorCode {code})")
        if code == USERSIG_EXPIRED:
            raise _UserSigExpired(f"{action}: UserSig expired (ErrorCode {code})")
        if code in AUTH_CODES:
            raise AuthError(f"{action}: the vendor refused the credentials (ErrorCode {code})")
        if code == ROOM_GONE:
            raise GoneError(f"{action}: the room does not exist (ErrorCode {code})")
        raise UpstreamError(f"{action}: the vendor failed (ErrorCode {code})", transient=code in RETRYABLE)

    async def poll(self, batch: Sequence[Target[TencentTarget]]) -> Mapping[str, Outcome]:
        (target,) = batch
        doc = await self._call("get_room_stats", {"RoomId": target.key})
        stats = obj(doc.get("Response"), "Response")
        return {target.key: [Sample.of(metric, count(stats.get(field), field)) for metric, field in COUNTS]}

    async def discover(self) -> list[Target[TencentTarget]]:
        found: dict[str, Target[TencentTarget]] = {}
        cursor = ""
        cursors = {cursor}
        pages = 0
        for _ in range(MAX_PAGES):
            doc = await self._call("get_room_list", {"Next": cursor, "Count": LIST_PAGE}, bucket="list")
            pages += 1
            response = obj(doc.get("Response"), "Response")
            if "RoomList" not in response:  # never "no rooms": that would remove every room's series
                raise ParseError("get_room_list: field RoomList is missing")
            rooms = response["RoomList"] or []
            if not isinstance(rooms, list):
                raise ParseError("get_room_list: field RoomList is not a list")
            for room in rooms:
                if isinstance(room, dict) and room.get("RoomId"):
                    try:
                        spec = TencentTarget(room_id=sendable(room["RoomId"], "RoomId"))
                    except (ParseError, ValidationError):
                        continue  # not a room id the stats endpoint takes
                    found[spec.key()] = Target.of(spec, Origin.DISCOVERY)
            cursor = str(response.get("Next") or "")
            if not cursor:
                break
            if cursor in cursors:  # a cursor seen before: following it would go round for MAX_PAGES
                self.log.warning(
                    "the room list answered a cursor it gave before; paging stopped", pages=pages
                )
                break
            cursors.add(cursor)
        self.discovery_requests = pages
        return list(found.values())
