"""--web.config.file is re-read when it or its certificate files change (as exporter-toolkit
does), so rotated certificates and changed passwords apply without a restart."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import ssl
import subprocess
import threading
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
        await live.refresh()
        after = await _peer_fingerprint(port, _basic("prom", "old"))
        assert after != before, "the rotated certificate was not picked up"

        # a new password in the web config file
        doc["basic_auth_users"] = {"prom": _hash("new")}
        web_file.write_text(yaml.safe_dump(doc))
        _touch_later(web_file)
        await live.refresh()
        await _peer_fingerprint(port, _basic("prom", "new"))
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        async with aiohttp.ClientSession() as s:
            r = await s.get(f"https://127.0.0.1:{port}/-/healthy", ssl=ctx, headers=_basic("prom", "old"))
            assert r.status == 401

        # a broken rewrite keeps the last good configuration
        web_file.write_text("basic_auth_users: {prom: not-a-hash}\n")
        _touch_later(web_file)
        await live.refresh()
        await _peer_fingerprint(port, _basic("prom", "new"))
    finally:
        await runner.cleanup()


def _client_ca(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A CA, and a client certificate and key it signed."""
    ca_key, ca, key, csr, cert = (tmp_path / n for n in ("ca.key", "ca.pem", "c.key", "c.csr", "c.pem"))
    run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", str(ca_key),
        "-out", str(ca), "-subj", "/CN=test-ca")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=prom")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "1", "-out", str(cert))  # fmt: skip
    return ca, cert, key


def _client_ctx(*, max_version: ssl.TLSVersion, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.maximum_version = max_version
    if cert is not None:
        ctx.load_cert_chain(*cert)
    return ctx


async def _status(session: aiohttp.ClientSession, port: int, ctx: ssl.SSLContext) -> int | str:
    try:
        async with session.get(f"https://127.0.0.1:{port}/-/healthy", ssl=ctx) as r:
            return r.status
    except (aiohttp.ClientError, ssl.SSLError, ConnectionError) as e:
        return type(e).__name__


async def test_tightened_tls_settings_apply_to_new_and_open_connections(vendor_url, write_config, tmp_path):
    """From TLS 1.2 with no client certificate to TLS 1.3 requiring a verified one, without a
    restart: new TLS 1.2 or certificate-less clients are refused at the handshake, and a
    connection kept open from before is not served any more."""
    cert, key = _self_signed(tmp_path)
    ca, client_cert, client_key = _client_ca(tmp_path)
    web_file = tmp_path / "web.yaml"
    tls = {"cert_file": str(cert), "key_file": str(key)}
    web_file.write_text(yaml.safe_dump({"tls_server_config": tls}))
    live = LiveWebConfig(str(web_file), exlog.get_logger())
    runner, port = await _serve(live, write_config([tv_source(vendor_url)]))
    tls12 = _client_ctx(max_version=ssl.TLSVersion.TLSv1_2)
    try:
        async with aiohttp.ClientSession() as kept:
            assert await _status(kept, port, tls12) == 200

            tls |= {"min_version": "TLS13", "client_auth_type": "RequireAndVerifyClientCert"}
            tls["client_ca_file"] = str(ca)
            web_file.write_text(yaml.safe_dump({"tls_server_config": tls}))
            _touch_later(web_file)
            await live.refresh()

            assert await _status(kept, port, tls12) == 403, "an old connection kept being served"
        for ctx in (tls12, _client_ctx(max_version=ssl.TLSVersion.TLSv1_3)):
            async with aiohttp.ClientSession() as fresh:
                assert await _status(fresh, port, ctx) != 200
        good = _client_ctx(max_version=ssl.TLSVersion.TLSv1_3, cert=(client_cert, client_key))
        async with aiohttp.ClientSession() as fresh:
            assert await _status(fresh, port, good) == 200
    finally:
        await runner.cleanup()


async def test_a_web_config_file_replaced_by_a_fifo_never_blocks_serving(
    vendor_url, write_config, tmp_path, logs
):
    """A FIFO has no writer: reading it would block for ever.  It is refused at once, the
    previous configuration stays, and requests are served meanwhile."""
    web_file = tmp_path / "web.yaml"
    web_file.write_text(yaml.safe_dump({"basic_auth_users": {"prom": _hash("pw")}}))
    live = LiveWebConfig(str(web_file), exlog.get_logger())
    exporter = Exporter(str(write_config([tv_source(vendor_url)])), log=exlog.get_logger())
    app = create_app(exporter, web_config=live)
    with_polling(app, exporter, exporter.load())
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        web_file.unlink()
        os.mkfifo(web_file)
        await asyncio.wait_for(live.refresh(), 5.0)
        assert any("not a regular file" in line for line in logs)
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"http://127.0.0.1:{port}/-/healthy", headers=_basic("prom", "pw")) as r,
        ):
            assert r.status == 200
    finally:
        await runner.cleanup()


async def test_a_changed_web_config_is_hashed_off_the_event_loop(tmp_path, monkeypatch):
    """Building the new basic-auth check hashes with bcrypt (~100 ms at cost 10): never on
    the event loop, where it would stall every scrape and poll."""
    web_file = tmp_path / "web.yaml"
    web_file.write_text(yaml.safe_dump({"basic_auth_users": {"prom": _hash("one")}}))
    live = LiveWebConfig(str(web_file), exlog.get_logger())
    threads: list[str] = []
    real = bcrypt.hashpw

    def spy(password: bytes, salt: bytes) -> bytes:
        threads.append(threading.current_thread().name)
        return real(password, salt)

    monkeypatch.setattr(bcrypt, "hashpw", spy)
    web_file.write_text(yaml.safe_dump({"basic_auth_users": {"prom": _hash("two")}}))
    _touch_later(web_file)
    threads.clear()
    await live.refresh()
    assert threads and threading.main_thread().name not in threads
    assert await live.auth.check("prom", "two")
