"""Run the real CLI (`python -m tests.run_exporter`) in a subprocess, for out-of-process tests.

stderr goes to a file so that logs can be read while the process runs and a chatty
exporter never blocks on a full pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
#: what `python -m tests.run_exporter` does, for `python -c PRELUDE + _RUN`
_RUN = """
import sys
from exporter.process.cli import main
from tests import fakevendor
fakevendor.install()
sys.exit(main(sys.argv[1:]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ExporterProcess:
    proc: asyncio.subprocess.Process
    base: str
    stderr_file: Path
    ssl: ssl.SSLContext | None = None
    auth: tuple[str, str] | None = None

    @property
    def stderr(self) -> str:
        return self.stderr_file.read_text(errors="replace")

    async def get(self, path: str, *, auth: tuple[str, str] | bool | None = True) -> tuple[int, str]:
        """GET a page; `auth` is (user, password), None for no credentials, True for the process's own."""
        creds = self.auth if auth is True else auth
        headers = {"Authorization": aiohttp.encode_basic_auth(*creds)} if creds else {}
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.base + path, ssl=self.ssl if self.ssl else True, headers=headers) as r,
        ):
            return r.status, await r.text()

    async def metrics(self, path: str = "/metrics") -> str:
        status, text = await self.get(path)
        assert status == 200, (status, text)
        return text

    async def signal_and_wait(self, sig: signal.Signals, within: float = 5.0) -> tuple[int, float]:
        """Send `sig`; return (exit code, seconds it took to exit)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.proc.send_signal(sig)
        code = await asyncio.wait_for(self.proc.wait(), within)
        return code, loop.time() - start


@contextlib.asynccontextmanager
async def run_exporter(
    tmp_path: Path,
    *args: str,
    config: Path,
    ssl_context: ssl.SSLContext | None = None,
    auth: tuple[str, str] | None = None,
    wait_path: str | None = "/-/ready",
    ready_timeout: float = 20.0,
    prelude: str | None = None,
) -> AsyncIterator[ExporterProcess]:
    """`prelude`: Python code run in the process before the CLI starts (to patch it for a test)."""
    port = free_port()
    stderr_file = tmp_path / f"exporter-{port}.stderr"
    launch = ("-m", "tests.run_exporter") if prelude is None else ("-c", prelude + "\n" + _RUN)
    with stderr_file.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *launch,
            "--config.file",
            str(config),
            "--web.listen-address",
            f"127.0.0.1:{port}",
            *args,
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err,
        )
    scheme = "https" if ssl_context is not None else "http"
    p = ExporterProcess(proc, f"{scheme}://127.0.0.1:{port}", stderr_file, ssl_context, auth)
    try:
        if wait_path is not None:
            await _wait_ok(p, wait_path, ready_timeout)
        yield p
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _wait_ok(p: ExporterProcess, path: str, within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        if p.proc.returncode is not None:
            raise AssertionError(f"exporter exited with {p.proc.returncode}:\n{p.stderr}")
        with contextlib.suppress(aiohttp.ClientError, OSError):
            status, _ = await p.get(path)
            if status == 200:
                return
        if loop.time() > deadline:
            raise AssertionError(f"exporter: no 200 on {path} within {within}s:\n{p.stderr}")
        await asyncio.sleep(0.05)
