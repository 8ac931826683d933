"""Real processes for the cluster tests: redis-server, the simulator, replicas of the exporter.

Redis is Debian's redis-server on a loopback port, stopped and started again on the same
port for the outage tests.  The simulator runs as `python -m exporter.simulator`, so the
replicas' requests cross real sockets and its windows count them on arrival.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from exporter.simulator.fermion import DEMO_KEY
from tests.exporter_process import ROOT, ExporterProcess, free_port, run_exporter
from tests.pollhelpers import parse
from tests.tooling import need


class RedisServer:
    """redis-server on a loopback port with a password, without persistence: a restart
    loses every key."""

    PASSWORD = "redis-test-password-5f1d"

    def __init__(self, workdir: Path) -> None:
        self.binary = need("redis-server", "Debian package redis-server")
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.password_file = workdir / "redis-password"
        self.password_file.write_text(self.PASSWORD + "\n")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--requirepass", self.PASSWORD,
             "--dir", str(self.workdir), "--logfile", str(self.workdir / "redis.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return
            time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None


@dataclass
class SimulatorProcess:
    proc: asyncio.subprocess.Process
    root: str
    session: aiohttp.ClientSession

    async def control(self, **args: Any) -> dict[str, Any]:
        async with self.session.post(f"{self.root}/_sim/control", json=args) as r:
            body: dict[str, Any] = await r.json()
            assert r.status == 200, body
            return body

    async def requests(self, vendor: str) -> list[dict[str, Any]]:
        async with self.session.get(f"{self.root}/_sim/requests", params={"vendor": vendor}) as r:
            records: list[dict[str, Any]] = (await r.json())["requests"]
            return records


@contextlib.asynccontextmanager
async def run_simulator() -> AsyncIterator[SimulatorProcess]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter.simulator", "--listen", f"127.0.0.1:{port}",
        cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    root = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        sim = SimulatorProcess(proc, root, session)
        try:
            deadline = asyncio.get_running_loop().time() + 20
            while True:
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(f"{root}/_sim/state") as r:
                        if r.status == 200:
                            break
                assert asyncio.get_running_loop().time() < deadline, "the simulator did not start"
                await asyncio.sleep(0.1)
            yield sim
        finally:
            proc.kill()
            await proc.wait()


@dataclass
class Replicas:
    """The running replicas, by name; `kill` takes one down without leaving the cluster."""

    tmp_path: Path
    config: Path
    stack: contextlib.AsyncExitStack
    running: dict[str, ExporterProcess] = field(default_factory=dict)

    async def start(self, name: str, *args: str) -> ExporterProcess:
        p = await self.stack.enter_async_context(
            run_exporter(self.tmp_path, *args, config=self.config, wait_path="/-/healthy")
        )
        self.running[name] = p
        return p

    def kill(self, name: str) -> None:
        self.running.pop(name).proc.send_signal(signal.SIGKILL)

    async def scrape(self) -> dict[str, list[tuple[str, dict[str, str], float]]]:
        """Every replica's samples, by replica name."""
        out = {}
        for name, p in self.running.items():
            _, text = await p.get("/metrics")
            out[name] = [(metric, dict(labels), v) for (metric, labels), v in parse(text).items()]
        return out


def cluster_config(
    path: Path,
    *,
    sim_root: str,
    redis: RedisServer | None,
    streams: list[str],
    requests: int,
    per: str,
    ttl: str,
    outage_grace: str = "10m",
    password_in_url: bool = False,
) -> Path:
    """Fermion polled at the simulator; with `redis`, as a cluster (None: each alone)."""
    config = {
        "global": {"interval": "1s", "timeout": "2s", "stale_after": "1m"},
        "sources": [
            {
                "name": "fm",
                "provider": "fermion",
                "base_url": f"{sim_root}/fermion/api",
                "credentials": {"api_key": DEMO_KEY},
                "rate_limit": [{"requests": requests, "per": per}],
                "targets": [{"live_event_session_id": s} for s in streams],
            }
        ],
        **(
            {
                "cluster": {
                    **(
                        {"redis_url": redis.url.replace("redis://", f"redis://:{redis.PASSWORD}@")}
                        if password_in_url
                        else {"redis_url": redis.url, "redis_password_file": str(redis.password_file)}
                    ),
                    "heartbeat_ttl": ttl,
                    "outage_grace": outage_grace,
                }
            }
            if redis is not None
            else {}
        ),
    }
    path.write_text(yaml.safe_dump(config))
    return path


def owners(scraped: dict[str, list[tuple[str, dict[str, str], float]]], metric: str) -> dict[str, list[str]]:
    """stream -> the replicas exporting `metric` of it."""
    out: dict[str, list[str]] = {}
    for replica, samples in scraped.items():
        for name, labels, _ in samples:
            if name == metric and "stream" in labels:
                out.setdefault(labels["stream"], []).append(replica)
    return out


class RedisProxy:
    """A TCP relay in front of Redis that can cut one replica off (a network partition)."""

    def __init__(self, redis: RedisServer) -> None:
        self.redis = redis
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.redis.port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))
