"""Signals that arrive while the command is still importing its libraries (the first few
hundred milliseconds after exec) must not kill it: a SIGHUP is applied once polling runs,
a SIGTERM is a clean exit 0.

The command runs behind an import hook that holds the import of aiohttp until the test has
sent its signal, so the signal lands during the imports every time, not by luck of timing.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.exporter_process import ROOT, free_port

#: the real entry point, with aiohttp's import held until a byte arrives on stdin
GATED_COMMAND = """
import os, sys

class Gate:
    def find_spec(self, name, path=None, target=None):
        if name == "aiohttp":
            sys.meta_path.remove(self)
            os.write(1, b"importing\\n")
            os.read(0, 1)
        return None

sys.meta_path.insert(0, Gate())
from exporter.process.entry import main
sys.exit(main())
"""


def _start(port: int, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-c", GATED_COMMAND, "--demo", "--web.listen-address", f"127.0.0.1:{port}"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log.open("wb"),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"importing\n", "the command never reached its imports"
    return proc


def _go_on(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdin is not None
    proc.stdin.write(b"x")
    proc.stdin.flush()


def _ready(port: int, proc: subprocess.Popen[bytes], within: float = 30.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    return False


def _wait_for_line(log: Path, text: str, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if text in log.read_text():
            return True
        time.sleep(0.1)
    return False


def test_sighup_while_importing_is_applied_after_start(tmp_path):
    port, log = free_port(), tmp_path / "stderr.log"
    proc = _start(port, log)
    try:
        proc.send_signal(signal.SIGHUP)
        _go_on(proc)
        assert _ready(port, proc), f"exited with {proc.poll()}:\n{log.read_text()}"
        assert _wait_for_line(log, "configuration reloaded"), log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_sigterm_while_importing_exits_0(tmp_path):
    proc = _start(free_port(), tmp_path / "stderr.log")
    proc.send_signal(signal.SIGTERM)
    _go_on(proc)
    assert proc.wait(10) == 0
