"""The exporter-toolkit web configuration file (`--web.config.file`).

Same keys as the Go exporters, so one file serves node_exporter and us:
`tls_server_config`, `basic_auth_users` (bcrypt hashes), `http_server_config.headers`.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from pathlib import Path
from typing import Literal

import bcrypt
import yaml
from pydantic import Field, ValidationError

from exporter.config import ConfigError, Strict, _pydantic_problems

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
        raise ConfigError(file, _pydantic_problems(e, [], WebConfig)) from None
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


class BasicAuth:
    """Checks users against bcrypt hashes, remembering good passwords by digest.

    bcrypt costs ~100 ms by design; Prometheus scrapes every few seconds with the same
    password, so a verified (user, sha256(password)) pair is cached, as exporter-toolkit does.
    """

    #: a hash to spend the same time on for unknown users, so timing does not reveal names
    _DUMMY = bcrypt.hashpw(b"livestream-exporter", bcrypt.gensalt(rounds=10))

    def __init__(self, users: dict[str, str]) -> None:
        self._users = {u: h.encode() for u, h in users.items()}
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
            ok = await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed or self._DUMMY)
        if ok and hashed is not None:
            self._ok.add((user, digest))
            return True
        return False
