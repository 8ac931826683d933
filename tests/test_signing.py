"""Signing: SwiftFederation Signature V2 and Tencent UserSig (TLS sig v2), with published vectors."""

from __future__ import annotations

import base64
import json
import zlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from exporter.providers.signing import (
    decode_usersig,
    sfd_canonical_headers,
    sfd_sign_headers,
    sfd_signature,
    sfd_string_to_sign,
    tencent_sig_hmac,
    tencent_usersig,
)

SFD_KEY_ID = "O80ybSq26xUE383u"
SFD_SECRET = "q738531SV3s0yFC2I3p7QJ49og37yIat"
SFD_HEADERS = {
    "Host": "open-api.swiftfederation.com",
    "X-SFD-FZone": "SG",
    "X-SFD-Date": "20250806T045529Z",
    "X-SFD-Nonce": "15121",
    "X-SFD-Signature-Version": "2",
}
SFD_EXPECTED = "3ebba5b79c247db566d957638ecc9d085d4805a957f84ad8114af721635a41a7"

TENCENT_APP_ID = 1400000000
TENCENT_KEY = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e"
TENCENT_SIG = "yLAe+w7WUeUuqbV9h/TX78u21oTGi+i9Zp1u3PpnY60="


def test_sfd_published_vector() -> None:
    signature = sfd_signature(
        method="GET",
        uri="/v1.1/customer/35394",
        headers=SFD_HEADERS,
        access_key_id=SFD_KEY_ID,
        access_key_secret=SFD_SECRET,
    )
    assert signature == SFD_EXPECTED


def test_sfd_string_to_sign_layout() -> None:
    text = sfd_string_to_sign(
        method="get", uri="/v1.1/customer/35394", headers=SFD_HEADERS, access_key_id=SFD_KEY_ID
    )
    assert text == (
        b"GET\n/v1.1/customer/35394\n"
        b"host:open-api.swiftfederation.com\n"
        b"x-sfd-date:20250806T045529Z\n"
        b"x-sfd-fzone:SG\n"
        b"x-sfd-nonce:15121\n"
        b"x-sfd-signature-version:2\n"
        b"O80ybSq26xUE383u\n"
    )


def test_sfd_canonical_headers_ignore_others_and_case() -> None:
    headers = {"HOST": "h", "x-SFD-b": "2", "X-SFD-A": "1", "Authorization": "x", "Content-Type": "y"}
    assert sfd_canonical_headers(headers) == "host:h\nx-sfd-a:1\nx-sfd-b:2\n"


def test_sfd_signature_covers_query_and_body() -> None:
    def sign(uri: str, body: bytes | str = b"") -> str:
        return sfd_signature(
            method="POST",
            uri=uri,
            headers=SFD_HEADERS,
            access_key_id=SFD_KEY_ID,
            access_key_secret=SFD_SECRET,
            body=body,
        )

    assert sign("/a?x=1") != sign("/a")
    assert sign("/a", b"{}") != sign("/a")
    assert sign("/a", "{}") == sign("/a", b"{}")


def test_sfd_sign_headers_reproduce_the_vector() -> None:
    headers = sfd_sign_headers(
        method="GET",
        url_path_with_query="/v1.1/customer/35394",
        host="open-api.swiftfederation.com",
        access_key_id=SFD_KEY_ID,
        access_key_secret=SFD_SECRET,
        now=datetime(2025, 8, 6, 4, 55, 29, tzinfo=UTC),
        nonce=15121,
        fzone="SG",
    )
    assert headers == {
        "X-SFD-Date": "20250806T045529Z",
        "X-SFD-Nonce": "15121",
        "X-SFD-Signature-Version": "2",
        "X-SFD-FZone": "SG",
        "Authorization": f"HMAC-SHA256 {SFD_KEY_ID}:{SFD_EXPECTED}",
    }


def test_sfd_sign_headers_converts_to_utc_and_omits_fzone() -> None:
    plus8 = timezone(timedelta(hours=8))
    headers = sfd_sign_headers(
        method="GET",
        url_path_with_query="/x?y=1",
        host="h",
        access_key_id="id",
        access_key_secret="s",
        now=datetime(2025, 8, 6, 12, 55, 29, tzinfo=plus8),
        nonce=7,
        fzone=None,
    )
    assert headers["X-SFD-Date"] == "20250806T045529Z"
    assert "X-SFD-FZone" not in headers
    expected = sfd_signature(
        method="GET",
        uri="/x?y=1",
        headers={"Host": "h", **{k: v for k, v in headers.items() if k != "Authorization"}},
        access_key_id="id",
        access_key_secret="s",
    )
    assert headers["Authorization"] == f"HMAC-SHA256 id:{expected}"


def test_tencent_sig_vector() -> None:
    sig = tencent_sig_hmac(
        sdk_app_id=TENCENT_APP_ID,
        identifier="administrator",
        secret_key=TENCENT_KEY,
        now=1700000000,
        expire=86400,
    )
    assert sig == TENCENT_SIG


def test_tencent_usersig_round_trip() -> None:
    usersig = tencent_usersig(
        sdk_app_id=TENCENT_APP_ID,
        identifier="administrator",
        secret_key=TENCENT_KEY,
        now=1700000000,
        expire=86400,
    )
    assert not set(usersig) & set("+/=")
    doc = decode_usersig(usersig)
    assert doc == {
        "TLS.ver": "2.0",
        "TLS.identifier": "administrator",
        "TLS.sdkappid": TENCENT_APP_ID,
        "TLS.expire": 86400,
        "TLS.time": 1700000000,
        "TLS.sig": TENCENT_SIG,
    }


def test_tencent_usersig_is_zlib_json_in_urlsafe_base64() -> None:
    usersig = tencent_usersig(sdk_app_id=1, identifier="a", secret_key="k", now=2, expire=3)
    raw = base64.b64decode(usersig.replace("*", "+").replace("-", "/").replace("_", "="))
    assert json.loads(zlib.decompress(raw))["TLS.sdkappid"] == 1


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "not a usersig",
        "****",
        base64.b64encode(b"plain text").decode(),
        base64.b64encode(zlib.compress(b"[1]")).decode(),
    ],
)
def test_decode_usersig_rejects_garbage(garbage: str) -> None:
    with pytest.raises(ValueError):
        decode_usersig(garbage)
