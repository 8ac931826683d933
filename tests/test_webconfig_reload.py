"""--web.config.file is re-read when it or its certificate files change (as exporter-toolkit
does), so rotated certificates and changed passwords apply without a restart."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import ssl
import time
from pathlib import Path

import aiohttp
import bcrypt
import yaml
from aiohttp import web

from exporter.process import logsetup as exlog
from exporter.process.daemon import Exporter
from exporter.process.serve import with_polling
from exporter.web.app import create_app
from exporter.web.webconfig import LiveWebConfig
from tests.conftest import tv_source
from tests.test_web import _self_signed


def _hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _touch_later(*paths: Path) -> None:
    """Make sure a rewrite is seen as a change even within one mtime tick."""
    later = time.time() + 5
    for p in paths:
        os.utime(p, (later, later))


async def _serve(live: LiveWebConfig, config_file: Path) -> tuple[web.AppRunner, int]:
    exporter = Exporter(str(config_file), log=exlog.get_logger())
    app = create_app(exporter, web_config=live)
    with_polling(app, exporter, exporter.load())
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=live.server_ssl_context())
    await site.start()
    return runner, runner.addresses[0][1]


async def _peer_fingerprint(port: int, auth: dict[str, str]) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"https://127.0.0.1:{port}/-/healthy", ssl=ctx, headers=auth) as r,
    ):
        assert r.status == 200
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    return hashlib.sha256(der).hexdigest()


async def test_rotated_certificate_and_changed_password_apply_without_restart(
    vendor_url, write_config, tmp_path
):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    cert, key = _self_signed(first)
    new_cert, new_key = _self_signed(second)
    web_file = tmp_path / "web.yaml"
    doc = {
        "tls_server_config": {"cert_file": str(cert), "key_file": str(key)},
        "basic_auth_users": {"prom": _hash("old")},
    }
    web_file.write_text(yaml.safe_dump(doc))
    live = LiveWebConfig(str(web_file), exlog.get_logger())
    runner, port = await _serve(live, write_config([tv_source(vendor_url)]))
    try:
        before = await _peer_fingerprint(port, _basic("prom", "old"))

        # cert-manager style rotation: same paths, new contents
        cert.write_bytes(new_cert.read_bytes())
        key.write_bytes(new_key.read_bytes())
        _touch_later(cert, key)
        after = await _peer_fingerprint(port, _basic("prom", "old"))
        assert after != before, "the rotated certificate was not picked up"

        # a new password in the web config file
        doc["basic_auth_users"] = {"prom": _hash("new")}
        web_file.write_text(yaml.safe_dump(doc))
        _touch_later(web_file)
        await _peer_fingerprint(port, _basic("prom", "new"))
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        async with aiohttp.ClientSession() as s:
            r = await s.get(f"https://127.0.0.1:{port}/-/healthy", ssl=ctx, headers=_basic("prom", "old"))
            assert r.status == 401

        # a broken rewrite keeps the last good configuration
        web_file.write_text("basic_auth_users: {prom: not-a-hash}\n")
        _touch_later(web_file)
        await _peer_fingerprint(port, _basic("prom", "new"))
    finally:
        await runner.cleanup()
