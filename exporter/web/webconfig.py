"""The exporter-toolkit web configuration file (`--web.config.file`).

Same keys as the Go exporters, so one file serves node_exporter and us:
`tls_server_config`, `basic_auth_users` (bcrypt hashes), `http_server_config.headers`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import bcrypt
import yaml
from pydantic import Field, ValidationError
from structlog.typing import FilteringBoundLogger

from exporter.config.files import MAX_CONFIG_BYTES, FileProblem, read_text_file
from exporter.config.problems import ConfigError, pydantic_problems
from exporter.config.schema import Strict
from exporter.model.offloop import READ_TIMEOUT_SECONDS, OffLoopTimeout, off_loop

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
    """Read and check the file (blocking: at start, or off the event loop)."""
    return _load(file)[0]


def _load(file: str) -> tuple[WebConfig, ssl.SSLContext | None]:
    """The checked configuration and its TLS context (built once: it loads the certificates)."""
    try:
        raw = yaml.safe_load(read_text_file(file, max_bytes=MAX_CONFIG_BYTES)) or {}
    except FileProblem as e:
        reason = str(e).replace(f"cannot read {file}", "cannot read the web configuration")
        raise ConfigError(file, [("", reason)]) from None
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
    context = None
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
            context = ssl_context(cfg)
        except (OSError, ssl.SSLError) as e:
            problems.append(("tls_server_config", f"cannot load the certificate or key: {e}"))
    if problems:
        raise ConfigError(file, problems)
    return cfg, context


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


#: bcrypt uses the first 72 bytes of a password; Go's bcrypt (exporter-toolkit) and
#: htpasswd ignore the rest, and so do we, so one hash works for every exporter
BCRYPT_MAX_BYTES = 72


class BasicAuth:
    """Checks users against bcrypt hashes, remembering good passwords by digest.

    bcrypt costs ~100 ms by design; Prometheus scrapes every few seconds with the same
    password, so a verified (user, sha256(password)) pair is cached, as exporter-toolkit does.
    Build it off the event loop: it hashes once itself.
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
        secret = password.encode()[:BCRYPT_MAX_BYTES]
        digest = hashlib.sha256(secret).digest()
        if (user, digest) in self._ok:
            return True
        hashed = self._users.get(user)
        async with self._slots:
            try:
                ok = await asyncio.to_thread(bcrypt.checkpw, secret, hashed or self._dummy)
            except ValueError:  # a hash bcrypt cannot read
                ok = False
        if ok and hashed is not None:
            self._ok.add((user, digest))
            return True
        return False


@dataclass(frozen=True)
class TLSPolicy:
    """What a connection must have shown at its handshake: a connection made under an
    older, looser policy is not served once the policy tightens."""

    min_version: str
    client_auth_type: str
    client_ca: bytes

    def admits(self, ssl_object: Any) -> bool:
        """Whether a connection with this TLS state meets the policy."""
        version = {"TLSv1.3": 13, "TLSv1.2": 12}.get(ssl_object.version() or "", 0)
        if version < (13 if self.min_version == "TLS13" else 12):
            return False
        if self.client_auth_type in ("RequireAnyClientCert", "RequireAndVerifyClientCert"):
            return ssl_object.getpeercert(binary_form=True) is not None
        return True


@dataclass(frozen=True)
class WebState:
    """One loaded web configuration with everything built from it."""

    config: WebConfig
    stamp: tuple[tuple[int, int] | None, ...]
    auth: BasicAuth
    tls: ssl.SSLContext | None
    policy: TLSPolicy | None


def _stamps(file: str, cfg: WebConfig | None) -> tuple[tuple[int, int] | None, ...]:
    tls = cfg.tls_server_config if cfg else None
    files = [file, *((tls.cert_file, tls.key_file, tls.client_ca_file or "") if tls else ())]
    out: list[tuple[int, int] | None] = []
    for f in files:
        try:
            st = os.stat(f) if f else None
        except OSError:
            st = None
        out.append((st.st_mtime_ns, st.st_size) if st else None)
    return tuple(out)


def build_state(file: str) -> WebState:
    """Load the file and build its auth and TLS context (blocking: off the event loop)."""
    stamp = _stamps(file, None)
    cfg, context = _load(file)
    tls = cfg.tls_server_config
    policy = None
    if tls is not None:
        ca = Path(tls.client_ca_file).read_bytes() if tls.client_ca_file else b""
        policy = TLSPolicy(tls.min_version, tls.client_auth_type, ca)
    return WebState(cfg, stamp + _stamps(file, cfg)[1:], BasicAuth(cfg.basic_auth_users), context, policy)


class _FollowingContext(ssl.SSLContext):
    """The listening socket's TLS context.  asyncio builds each connection's TLS object with
    `wrap_bio`; this one hands that to the current configuration's context, so a new
    certificate, minimum version or client-certificate rule applies from the next handshake."""

    current: Callable[[], ssl.SSLContext | None]

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        ctx = self.current()
        if ctx is None:  # TLS was switched off in the file: that needs a restart
            return super().wrap_bio(*args, **kwargs)
        return ctx.wrap_bio(*args, **kwargs)


class LiveWebConfig:
    """The web configuration file, re-read when it or a file it names changes.

    exporter-toolkit reads its file on every request and TLS handshake, so rotated
    certificates (cert-manager) and changed passwords apply without a restart.  We check
    the files' modification times every `CHECK_EVERY` seconds, off the event loop (a file
    on a hung mount must not freeze serving); requests only read the current state.  A
    broken new file is logged and the previous configuration stays in force.
    """

    CHECK_EVERY = 1.0

    def __init__(self, file: str, log: FilteringBoundLogger) -> None:
        self.file = file
        self._log = log
        self.state = build_state(file)

    @property
    def config(self) -> WebConfig:
        return self.state.config

    @property
    def auth(self) -> BasicAuth:
        return self.state.auth

    @property
    def policy(self) -> TLSPolicy | None:
        return self.state.policy

    @property
    def headers(self) -> dict[str, str]:
        return self.state.config.http_server_config.headers

    async def watch(self) -> None:
        """Refresh every `CHECK_EVERY` seconds, for as long as the server runs."""
        while True:
            await asyncio.sleep(self.CHECK_EVERY)
            await self.refresh()

    async def refresh(self) -> None:
        """Re-read the files if they changed since the last look."""
        old = self.state
        seconds = READ_TIMEOUT_SECONDS
        try:
            stamp = await off_loop(lambda: _stamps(self.file, old.config), seconds=seconds, what="web config")
            if stamp == old.stamp:
                return
            new = await off_loop(lambda: build_state(self.file), seconds=seconds, what="web config")
        except ConfigError as e:
            # not again until the files change again
            self.state = WebState(old.config, stamp, old.auth, old.tls, old.policy)
            self._log.error("web configuration reload failed; keeping the previous one", reason=str(e))
            return
        except (OffLoopTimeout, OSError, ssl.SSLError) as e:
            self._log.error("web configuration reload failed; keeping the previous one", reason=str(e))
            return
        if (new.config.tls_server_config is None) != (old.config.tls_server_config is None):
            self.state = WebState(old.config, new.stamp, old.auth, old.tls, old.policy)
            self._log.error(
                "web configuration reload: switching TLS on or off needs a restart; keeping the previous one"
            )
            return
        self.state = new
        self._log.info("web configuration reloaded", file=self.file)

    def server_ssl_context(self) -> ssl.SSLContext | None:
        """The listening socket's context: each handshake uses the current configuration's."""
        if self.state.tls is None:
            return None
        outer = _FollowingContext(ssl.PROTOCOL_TLS_SERVER)
        outer.current = lambda: self.state.tls
        return outer
