"""Signals that arrive while the command is still importing its libraries (the first few
hundred milliseconds after exec) must not kill it: a SIGHUP is applied once polling runs,
a SIGTERM is a clean exit 0 (CONTRACT.md section 1)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.exporter_process import free_port

ROOT = Path(__file__).resolve().parent.parent
COMMAND = [sys.executable, "-m", "exporter", "--demo"]


def _start(port: int, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*COMMAND, "--web.listen-address", f"127.0.0.1:{port}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )


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


def test_sighup_while_importing_is_applied_after_start(tmp_path):
    port, log = free_port(), tmp_path / "stderr.log"
    proc = _start(port, log)
    try:
        time.sleep(0.15)  # past interpreter start-up, well inside the imports
        proc.send_signal(signal.SIGHUP)
        assert _ready(port, proc), f"exited with {proc.poll()}:\n{log.read_text()}"
        time.sleep(0.5)
        assert "configuration reloaded" in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_sigterm_while_importing_exits_0(tmp_path):
    proc = _start(free_port(), tmp_path / "stderr.log")
    time.sleep(0.15)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
