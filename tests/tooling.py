"""External tools the deployment tests run: skipped when missing on a laptop, failed under CI=true.

`make test` installs every one of them (Debian, PyPI or npm, by package name), so under
CI=true a missing tool is a broken set-up, not a reason to skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
NODE_PREFIX = ROOT / "build" / "node"


def missing(msg: str) -> None:
    """Fail under CI=true, skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def need(binary: str, source: str) -> str:
    """The path of `binary` (on PATH or in the project's virtualenv); `source` says where it comes from."""
    path = shutil.which(binary) or shutil.which(binary, path=str(VENV_BIN))
    if path is None:
        missing(f"{binary} is missing: make test installs it ({source})")
        raise AssertionError  # unreachable: missing() raises
    return path


def need_node_module(name: str) -> Path:
    """A package that `make test` installs with npm under build/node."""
    path = NODE_PREFIX / "node_modules" / name
    if not path.is_dir():
        missing(f"npm package {name} is missing under build/node: make test installs it")
    return path


def config_check(
    config: Path, env: dict[str, str] | None = None, extra_args: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`livestream-exporter --config.check` of the project's virtualenv on `config`."""
    return subprocess.run(
        [
            str(VENV_BIN / "livestream-exporter"),
            "--config.file",
            str(config),
            "--config.check",
            *(extra_args or []),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
