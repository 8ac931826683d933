"""Request signing for the vendors that need it (pure functions, stdlib only).

* SwiftFederation Signature V2 (HMAC-SHA256 over method, URI, canonical headers,
  access key id and body).
* Tencent Cloud IM UserSig, TLS sig v2 (HMAC-SHA256, JSON, zlib, URL-safe base64).

Nothing here logs or keeps a secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime

__all__ = [
    "SFD_DATE_FORMAT",
    "decode_usersig",
    "sfd_canonical_headers",
    "sfd_date",
    "sfd_sign_headers",
    "sfd_signature",
    "sfd_string_to_sign",
    "tencent_sig_hmac",
    "tencent_usersig",
]

SFD_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_SFD_PREFIX = "x-sfd-"

_USERSIG_TO_URLSAFE = str.maketrans({"+": "*", "/": "-", "=": "_"})
_USERSIG_FROM_URLSAFE = str.maketrans({"*": "+", "-": "/", "_": "="})


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data


# --------------------------------------------------------------------------- SwiftFederation


def sfd_canonical_headers(headers: Mapping[str, str]) -> str:
    """`host` and every `x-sfd-*` header, names lowercased and sorted, each `name:value\\n`."""
    selected: dict[str, str] = {}
    for name, value in headers.items():
        lname = name.strip().lower()
        if lname == "host" or lname.startswith(_SFD_PREFIX):
            selected[lname] = value.strip()
    return "".join(f"{name}:{selected[name]}\n" for name in sorted(selected))


def sfd_string_to_sign(
    *, method: str, uri: str, headers: Mapping[str, str], access_key_id: str, body: bytes | str = b""
) -> bytes:
    """`METHOD\\nURI\\n` + canonical headers + `AccessKeyID\\n` + body."""
    head = f"{method.upper()}\n{uri}\n{sfd_canonical_headers(headers)}{access_key_id}\n"
    return head.encode("utf-8") + _as_bytes(body)


def sfd_signature(
    *,
    method: str,
    uri: str,
    headers: Mapping[str, str],
    access_key_id: str,
    access_key_secret: str,
    body: bytes | str = b"",
) -> str:
    """Lowercase hex HMAC-SHA256 of the string to sign; `uri` is the path with its query string."""
    message = sfd_string_to_sign(
        method=method, uri=uri, headers=headers, access_key_id=access_key_id, body=body
    )
    return hmac.new(access_key_secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sfd_date(now: datetime) -> str:
    """`yyyyMMddTHHmmssZ` in UTC (a naive datetime is taken as UTC)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(UTC).strftime(SFD_DATE_FORMAT)


def sfd_sign_headers(
    *,
    method: str,
    url_path_with_query: str,
    host: str,
    access_key_id: str,
    access_key_secret: str,
    now: datetime,
    nonce: int,
    fzone: str | None = None,
    body: bytes | str = b"",
) -> dict[str, str]:
    """The headers to add to a SwiftFederation request (Host itself is sent by the client)."""
    signed: dict[str, str] = {
        "X-SFD-Date": sfd_date(now),
        "X-SFD-Nonce": str(nonce),
        "X-SFD-Signature-Version": "2",
    }
    if fzone:
        signed["X-SFD-FZone"] = fzone
    signature = sfd_signature(
        method=method,
        uri=url_path_with_query,
        headers={"Host": host, **signed},
        access_key_id=access_key_id,
        access_key_secret=access_key_secret,
        body=body,
    )
    signed["Authorization"] = f"HMAC-SHA256 {access_key_id}:{signature}"
    return signed


# --------------------------------------------------------------------------- Tencent UserSig


def tencent_sig_hmac(*, sdk_app_id: int, identifier: str, secret_key: str, now: int, expire: int) -> str:
    """TLS.sig: base64 of HMAC-SHA256(secret_key, content string)."""
    content = f"TLS.identifier:{identifier}\nTLS.sdkappid:{sdk_app_id}\nTLS.time:{now}\nTLS.expire:{expire}\n"
    digest = hmac.new(secret_key.encode("utf-8"), content.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def tencent_usersig(*, sdk_app_id: int, identifier: str, secret_key: str, now: int, expire: int) -> str:
    """A TLS sig v2 UserSig valid from `now` (unix seconds) for `expire` seconds."""
    doc = {
        "TLS.ver": "2.0",
        "TLS.identifier": identifier,
        "TLS.sdkappid": sdk_app_id,
        "TLS.expire": expire,
        "TLS.time": now,
        "TLS.sig": tencent_sig_hmac(
            sdk_app_id=sdk_app_id, identifier=identifier, secret_key=secret_key, now=now, expire=expire
        ),
    }
    compressed = zlib.compress(json.dumps(doc, separators=(",", ":")).encode("utf-8"))
    return base64.b64encode(compressed).decode("ascii").translate(_USERSIG_TO_URLSAFE)


def decode_usersig(usersig: str) -> dict[str, object]:
    """The JSON document inside a UserSig; ValueError when it cannot be decoded."""
    try:
        raw = base64.b64decode(usersig.translate(_USERSIG_FROM_URLSAFE).encode("ascii"), validate=True)
        doc = json.loads(zlib.decompress(raw).decode("utf-8"))
    except (binascii.Error, zlib.error, UnicodeError, ValueError) as exc:
        raise ValueError("UserSig cannot be decoded") from exc
    if not isinstance(doc, dict):
        raise ValueError("UserSig does not hold a JSON object")
    return {str(k): v for k, v in doc.items()}
