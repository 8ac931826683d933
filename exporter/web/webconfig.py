"""The exporter-toolkit web configuration file (`--web.config.file`).

Same keys as the Go exporters, so one file serves node_exporter and us:
`tls_server_config`, `basic_auth_users` (bcrypt hashes), `http_server_config.headers`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
from pathlib import Path
from typing import Literal

import bcrypt
import yaml
from pydantic import Field, ValidationError
from structlog.typing import FilteringBoundLogger

from exporter.config.problems import ConfigError, pydantic_problems
from exporter.config.schema import Strict

ClientAuth = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]


class TLSServerConfig(Strict):
    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    client_auth_type: ClientAuth = "NoClientCert"
    min_version: Literal["TLS12", "TLS13"] = "TLS12"


class HTTPServerConfig(Strict):
    headers: dict[str, str] = Field(default_factory=dict)
    http2: bool = True


class WebConfig(Strict):
    tls_server_config: TLSServerConfig | None = None
    basic_auth_users: dict[str, str] = Field(default_factory=dict)
    http_server_config: HTTPServerConfig = Field(default_factory=HTTPServerConfig)


def load_web_config(file: str) -> WebConfig:
    try:
        raw = yaml.safe_load(Path(file).read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise ConfigError(file, [("", f"cannot read the web configuration: {e.strerror or e}")]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(file, [("", f"invalid YAML: {at}{getattr(e, 'problem', None) or e}")]) from None
    try:
        cfg = WebConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(file, pydantic_problems(e, [], WebConfig)) from None
    problems = []
    for user, hashed in cfg.basic_auth_users.items():
        if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            problems.append(
                (f"basic_auth_users.{user}", "must be a bcrypt hash (e.g. from htpasswd -nBC 10)")
            )
    tls = cfg.tls_server_config
    if tls is not None:
        if (
            tls.client_auth_type != "NoClientCert"
            and not tls.client_ca_file
            and tls.client_auth_type != "RequestClientCert"
        ):
            problems.append(
                ("tls_server_config.client_ca_file", f"required with client_auth_type {tls.client_auth_type}")
            )
        try:
            ssl_context(cfg)
        except (OSError, ssl.SSLError) as e:
            problems.append(("tls_server_config", f"cannot load the certificate or key: {e}"))
    if problems:
        raise ConfigError(file, problems)
    return cfg


def ssl_context(cfg: WebConfig) -> ssl.SSLContext | None:
    tls = cfg.tls_server_config
    if tls is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3 if tls.min_version == "TLS13" else ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_ca_file:
        ctx.load_verify_locations(tls.client_ca_file)
    ctx.verify_mode = {
        "NoClientCert": ssl.CERT_NONE,
        "RequestClientCert": ssl.CERT_OPTIONAL,
        "RequireAnyClientCert": ssl.CERT_REQUIRED,
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }[tls.client_auth_type]
    return ctx


def _cost(hashed: str) -> int:
    """The cost factor of a bcrypt hash (`$2b$12$...` -> 12)."""
    try:
        return min(max(int(hashed.split("$")[2]), 4), 31)
    except (IndexError, ValueError):
        return 10


class BasicAuth:
    """Checks users against bcrypt hashes, remembering good passwords by digest.

    bcrypt costs ~100 ms by design; Prometheus scrapes every few seconds with the same
    password, so a verified (user, sha256(password)) pair is cached, as exporter-toolkit does.
    """

    def __init__(self, users: dict[str, str]) -> None:
        self._users = {u: h.encode() for u, h in users.items()}
        # unknown users cost a check of the same cost, so timing does not reveal names
        rounds = max((_cost(h) for h in users.values()), default=4)
        self._dummy = bcrypt.hashpw(b"livestream-exporter", bcrypt.gensalt(rounds=rounds)) if users else b""
        self._ok: set[tuple[str, bytes]] = set()
        # bcrypt runs in threads, two at a time: wrong passwords must not stall polling
        self._slots = asyncio.Semaphore(2)

    def __bool__(self) -> bool:
        return bool(self._users)

    async def check(self, user: str, password: str) -> bool:
        digest = hashlib.sha256(password.encode()).digest()
        if (user, digest) in self._ok:
            return True
        hashed = self._users.get(user)
        async with self._slots:
            ok = await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed or self._dummy)
        if ok and hashed is not None:
            self._ok.add((user, digest))
            return True
        return False


class LiveWebConfig:
    """The web configuration file, re-read when it or a file it names changes.

    exporter-toolkit reads its file on every request and TLS handshake, so rotated
    certificates (cert-manager) and changed passwords apply without a restart; so do we,
    checking modification times (a few stat calls) instead of parsing every time.  A
    broken new file is logged and the previous configuration stays in force.
    """

    def __init__(self, file: str, log: FilteringBoundLogger) -> None:
        self.file = file
        self._log = log
        self.config = load_web_config(file)
        self._stamp = self._stamps(self.config)
        self.auth = BasicAuth(self.config.basic_auth_users)
        self._tls = ssl_context(self.config)

    def _stamps(self, cfg: WebConfig) -> tuple[tuple[int, int] | None, ...]:
        tls = cfg.tls_server_config
        files = [self.file, *((tls.cert_file, tls.key_file, tls.client_ca_file or "") if tls else ())]
        out: list[tuple[int, int] | None] = []
        for f in files:
            try:
                st = os.stat(f) if f else None
            except OSError:
                st = None
            out.append((st.st_mtime_ns, st.st_size) if st else None)
        return tuple(out)

    def refresh(self) -> None:
        stamp = self._stamps(self.config)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            cfg = load_web_config(self.file)
        except ConfigError as e:
            self._log.error("web configuration reload failed; keeping the previous one", reason=str(e))
            return
        if (cfg.tls_server_config is None) != (self.config.tls_server_config is None):
            self._log.error(
                "web configuration reload: switching TLS on or off needs a restart; keeping the previous one"
            )
            return
        self.config, self._stamp = cfg, self._stamps(cfg)
        self.auth = BasicAuth(cfg.basic_auth_users)
        self._tls = ssl_context(cfg)
        self._log.info("web configuration reloaded", file=self.file)

    @property
    def headers(self) -> dict[str, str]:
        return self.config.http_server_config.headers

    def server_ssl_context(self) -> ssl.SSLContext | None:
        """The listening socket's context; each handshake switches to the current one."""
        outer = ssl_context(self.config)
        if outer is None:
            return None

        def on_handshake(
            sock: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: ssl.SSLContext
        ) -> None:
            self.refresh()
            if self._tls is not None:
                sock.context = self._tls

        outer.sni_callback = on_handshake
        return outer
