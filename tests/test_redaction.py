"""No secret appears in logs, metrics, error messages or pages.

Known secret values are fed in through the configuration (directly, via ${ENV} and via
`api_key_file`), through failures (vendor 401 -> AuthError, a 500 whose body echoes the
key, configuration errors next to the secret) and debug logging; then every output is
searched for them.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from exporter.config.loader import load_config
from exporter.config.problems import ConfigError
from exporter.model.redaction import REDACTED, REDACTOR
from exporter.process import logsetup as exlog
from tests.conftest import tv_source, wait_for
from tests.exporter_process import ROOT
from tests.fakevendor import API_KEY, FakeVendor

SECRET_ENV = "env-secret-value-7f3a9c51"
SECRET_FILE = "file-secret-value-2b8d1e07"
SECRET_NEW = "new-secret-in-a-bad-reload-5c4e"
ALL_SECRETS = (API_KEY, SECRET_ENV, SECRET_FILE, SECRET_NEW)


def assert_clean(where: str, text: str, secrets: tuple[str, ...] = ALL_SECRETS) -> None:
    for s in secrets:
        assert s not in text, f"secret {s!r} leaked into {where}:\n{text}"


def echoing_vendor(vendor: FakeVendor) -> web.Application:
    """The fake vendor, made hostile: every error answer echoes the key it was sent."""

    @web.middleware
    async def echo(request: web.Request, handler: Any) -> web.StreamResponse:
        resp = await handler(request)
        if resp.status >= 400:
            key = request.headers.get("X-Key", "")
            return web.json_response(
                {"error": f"invalid key {key}", "key": key}, status=resp.status, headers={"X-Echo": key}
            )
        return resp

    app = vendor.app()
    app.middlewares.append(echo)
    return app


@pytest.fixture
def redactor_state() -> Iterator[None]:
    saved, dynamic = REDACTOR._static, dict(REDACTOR._dynamic)
    yield
    REDACTOR._dynamic = dynamic
    REDACTOR.set_secrets(saved)


# ---- the running exporter ---------------------------------------------------------------


async def test_no_secret_in_logs_metrics_page_or_reload_error(
    vendor, aiohttp_server, write_config, running, logs, tmp_path, monkeypatch
):
    """Secrets given directly, by ${ENV} and by *_file never reach logs, /metrics, / or a reload error."""
    server = await aiohttp_server(echoing_vendor(vendor))
    url = str(server.make_url("")).rstrip("/")
    monkeypatch.setenv("TV_SECRET", SECRET_ENV)
    key_file = tmp_path / "key.txt"
    key_file.write_text(SECRET_FILE + "\n")
    vendor.faults.update({"b": "500", "c": "auth"})
    direct = tv_source(url, name="direct", app_metrics=True)
    env = tv_source(url, name="env", targets=["a"], discover=True)
    env["credentials"] = {"api_key": "${TV_SECRET}"}
    from_file = tv_source(url, name="file", targets=["a"])
    from_file["credentials"] = {"api_key_file": str(key_file)}
    cfg = write_config([direct, env, from_file])

    exporter, client = await running(cfg, enable_lifecycle=True)
    await wait_for(exporter.store.ready)
    targets = [t for s in exporter.store.sources.values() for t in s.targets.values()]
    await wait_for(
        lambda: all(t.attempted for s in exporter.store.sources.values() for t in s.targets.values())
    )
    kinds = {
        (s.name, t.target.key): t.error for s in exporter.store.sources.values() for t in s.targets.values()
    }
    # the failures really happened, so their messages were really produced
    assert kinds[("direct", "a")] is None
    assert kinds[("direct", "b")] == "upstream"
    assert kinds[("direct", "c")] == "auth"
    assert kinds[("env", "a")] == "auth"
    assert kinds[("file", "a")] == "auth"
    assert targets

    # a reload with a new secret next to a broken key: rejected, and the new secret not echoed
    bad = yaml.safe_load(cfg.read_text())
    bad["sources"][0]["credentials"] = {"api_key": SECRET_NEW, "api_kee": SECRET_NEW}
    bad["sources"][0]["batch_size"] = "lots"
    cfg.write_text(yaml.safe_dump(bad))
    r = await client.post("/-/reload")
    reload_body = await r.text()
    assert r.status == 500 and "api_kee" in reload_body
    assert_clean("the POST /-/reload answer", reload_body)

    metrics = await (await client.get("/metrics")).text()
    page = await (await client.get("/")).text()
    assert 'livestream_target_up{provider="testvendor",source="direct",stream="tv/a"} 1.0' in metrics
    assert "tv/b" in page and "auth" in page
    assert_clean("/metrics", metrics)
    assert_clean("the landing page", page)

    text = "\n".join(logs)
    assert "level=debug" in text, "debug logging was not exercised"
    assert "error=auth" in text and "error=upstream" in text and "reload failed" in text, text
    assert_clean("the logs", text)


async def test_no_secret_in_logs_with_stdlib_loggers_at_debug(
    vendor, vendor_url, write_config, running, logs
):
    """Library loggers (aiohttp, asyncio) render through the same redacting chain."""
    exporter, _ = await running(write_config([tv_source(vendor_url)]))
    await wait_for(exporter.store.ready)
    logging.getLogger("aiohttp.client").warning("request with X-Key: %s failed", API_KEY)
    logging.getLogger("asyncio").error("%s", {"headers": {"X-Key": API_KEY}})
    lines = [ln for ln in logs if "X-Key" in ln]
    assert len(lines) == 2, logs
    assert_clean("stdlib log lines", "\n".join(lines))
    assert all(REDACTED in ln for ln in lines)


# ---- configuration errors ---------------------------------------------------------------

SECRET_CFG = "cfg-secret-value-93ad7e01"


def _source(**over: Any) -> dict[str, Any]:
    src = {
        "name": "tv",
        "provider": "testvendor",
        "base_url": "http://127.0.0.1:9",
        "credentials": {"api_key": SECRET_CFG},
        "targets": [{"stream_id": "a"}],
    }
    src.update(over)
    return src


BROKEN = {
    "unknown-neighbour": _source(credentials={"api_key": SECRET_CFG, "api_secret": SECRET_CFG}),
    "misspelt-key": _source(credentials={"apikey": SECRET_CFG}),
    "wrong-type-neighbour": _source(batch_size="lots"),
    "secret-of-wrong-type": _source(credentials={"api_key": [SECRET_CFG, {"x": SECRET_CFG}]}),
    "unknown-target-key": _source(targets=[{"stream_id": "a", "token": SECRET_CFG}]),
    "duplicate-source": [_source(), _source()],
    "undefined-env-neighbour": _source(base_url="${UNDEFINED_VAR_FOR_TEST}/x?k=" + SECRET_CFG),
}


def _write(tmp_path: Path, case: str) -> Path:
    doc = BROKEN[case]
    sources = doc if isinstance(doc, list) else [doc]
    path = tmp_path / f"{case}.yaml"
    path.write_text(yaml.safe_dump({"global": {"interval": "10s"}, "sources": sources}))
    return path


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_config_error_never_carries_the_secret(case, tmp_path, monkeypatch):
    """A ConfigError about a key next to a secret names the key, not the secret's value."""
    monkeypatch.delenv("UNDEFINED_VAR_FOR_TEST", raising=False)
    path = _write(tmp_path, case)
    with pytest.raises(ConfigError) as e:
        load_config(str(path))
    message = str(e.value)
    assert message.startswith(str(path) + ": sources["), message
    assert_clean("the ConfigError", message, (SECRET_CFG,))


def test_invalid_yaml_error_never_quotes_the_line(tmp_path):
    """A YAML syntax error on the line holding the secret reports the position, not the text."""
    path = tmp_path / "broken.yaml"
    path.write_text(
        "sources:\n  - name: tv\n    provider: testvendor\n"
        f"    credentials: {{api_key: {SECRET_CFG}, x: [}}\n"
    )
    with pytest.raises(ConfigError) as e:
        load_config(str(path))
    assert "line 4" in str(e.value)
    assert_clean("the YAML error", str(e.value), (SECRET_CFG,))


async def test_cli_config_check_never_prints_the_secret(tmp_path, monkeypatch):
    """`--config.check` in a subprocess: exit 2 with the key path (broken) or 0 (valid); never the secret."""
    monkeypatch.delenv("UNDEFINED_VAR_FOR_TEST", raising=False)

    async def check(path: Path) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.run_exporter",
            "--config.file",
            str(path),
            "--config.check",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    results = await asyncio.gather(*(check(_write(tmp_path, case)) for case in sorted(BROKEN)))
    for case, (code, out, err) in zip(sorted(BROKEN), results, strict=True):
        assert code == 2, (case, out, err)
        assert "sources[" in err and "Traceback" not in err, (case, err)
        assert_clean(f"--config.check output ({case})", out + err, (SECRET_CFG,))

    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"sources": [_source()]}))
    code, out, err = await check(good)
    assert code == 0, err
    assert "tv" in out
    assert_clean("--config.check output (valid file)", out + err, (SECRET_CFG,))


# ---- the redactor itself ----------------------------------------------------------------


def test_redactor_replaces_a_secret_inside_a_longer_string(redactor_state):
    REDACTOR.set_secrets({"abcd-1234-secret", "other-secret-99"})
    assert (
        REDACTOR.scrub("GET /x?key=abcd-1234-secret&y=1 failed; other-secret-99!")
        == f"GET /x?key={REDACTED}&y=1 failed; {REDACTED}!"
    )
    assert REDACTOR.scrub("nothing to hide") == "nothing to hide"
    REDACTOR.set_dynamic("usersig", "usersig-made-at-runtime")
    assert REDACTOR.scrub("sig=usersig-made-at-runtime") == f"sig={REDACTED}"
    assert REDACTOR.scrub("abcd-1234-secret") == REDACTED


def test_runtime_secrets_never_make_the_redactor_grow(redactor_state):
    """A renewed UserSig replaces the old one instead of adding to it, so a 70001 loop cannot grow
    the redactor per poll: a slot keeps the current and the previous value; a reload keeps the slots."""
    REDACTOR.set_secrets(())
    REDACTOR._dynamic = {}
    for i in range(1000):
        REDACTOR.set_dynamic("tencent-usersig:src", f"usersig-number-{i:04d}")
    assert REDACTOR.scrub("usersig-number-0999 usersig-number-0998") == f"{REDACTED} {REDACTED}"
    assert REDACTOR.scrub("usersig-number-0997") == "usersig-number-0997"
    assert REDACTOR._pattern is not None and REDACTOR._pattern.pattern.count("|") == 1
    REDACTOR.set_secrets({"config-secret-1"})
    assert REDACTOR.scrub("usersig-number-0999 config-secret-1") == f"{REDACTED} {REDACTED}"


def test_log_keys_that_name_secrets_are_redacted(logs, redactor_state):
    """Values of keys like token=, api_key=, password=, authorization= never reach a log line."""
    REDACTOR.set_secrets({"registered-secret-42"})
    log = exlog.get_logger()
    log.info(
        "calling vendor",
        token="tok-value-1",
        api_key="key-value-2",
        access_key_secret="sec-value-3",
        password="pw-value-4",
        authorization="Bearer bearer-value-5",
        usersig="sig-value-6",
        detail="url was https://h/?k=registered-secret-42",
        count=3,
    )
    try:
        raise RuntimeError("failed with registered-secret-42")
    except RuntimeError:
        log.exception("boom")
    text = "\n".join(logs)
    for value in ("tok-value-1", "key-value-2", "sec-value-3", "pw-value-4", "bearer-value-5", "sig-value-6"):
        assert value not in text, text
    assert "registered-secret-42" not in text, text
    line = next(ln for ln in logs if "calling vendor" in ln)
    for key in ("token", "api_key", "access_key_secret", "password", "authorization", "usersig"):
        assert f"{key}={REDACTED}" in line, line
    assert f"detail=https://h/?k={REDACTED}" in line or f'detail="url was https://h/?k={REDACTED}"' in line, (
        line
    )
    assert "count=3" in line
    assert any("RuntimeError" in ln for ln in logs)
