"""The command line, run as a real process: flags, their defaults, exit codes and messages.

Exit codes: 0 clean, 2 invalid flags or configuration (one readable message naming the
file and key path, no traceback), 1 anything else.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml

from exporter import __version__
from exporter.config.registry import PROVIDERS
from exporter.process.settings import Settings, parse_args, split_address

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "cli-test-key-5f3a9c"


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """The real CLI with the test provider registered, in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "tests.run_exporter", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def source(name: str = "tv", targets: int | list[str] = 1, **extra: Any) -> dict[str, Any]:
    ids = [f"s{i}" for i in range(targets)] if isinstance(targets, int) else targets
    return {
        "name": name,
        "provider": "testvendor",
        "base_url": "http://127.0.0.1:9",
        "credentials": {"api_key": API_KEY},
        "targets": [{"stream_id": i} for i in ids],
        **extra,
    }


def write(tmp_path: Path, doc: dict[str, Any] | str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return path


def assert_one_message(result: subprocess.CompletedProcess[str], expected: str) -> None:
    """Exit 2, stderr is exactly one readable line, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [expected], result.stderr


# ---- flags and their defaults ----------------------------------------------------------------


def test_parse_args_defaults() -> None:
    """With no flags: config.yaml, :9733, /metrics, no web config, info, logfmt."""
    s = parse_args([])
    assert s == Settings(
        config_file="config.yaml",
        config_check=False,
        listen_address=":9733",
        telemetry_path="/metrics",
        web_config_file=None,
        log_level="info",
        log_format="logfmt",
        demo=False,
    )


def test_parse_args_every_flag() -> None:
    s = parse_args(
        [
            "--config.file=/etc/le.yaml",
            "--config.check",
            "--web.listen-address",
            "127.0.0.1:9999",
            "--web.telemetry-path=/stats",
            "--web.config.file",
            "/etc/web.yaml",
            "--web.enable-lifecycle",
            "--web.max-connections=20",
            "--web.read-timeout=1m30s",
            "--log.level=debug",
            "--log.format=json",
            "--demo",
        ]
    )
    assert s == Settings(
        config_file="/etc/le.yaml",
        config_check=True,
        listen_address="127.0.0.1:9999",
        telemetry_path="/stats",
        web_config_file="/etc/web.yaml",
        enable_lifecycle=True,
        max_connections=20,
        read_timeout=90.0,
        log_level="debug",
        log_format="json",
        demo=True,
    )


def test_the_demo_listens_on_loopback_unless_told_otherwise() -> None:
    assert parse_args(["--demo"]).listen_address == "127.0.0.1:9733"
    assert parse_args([]).listen_address == ":9733"
    assert parse_args(["--demo", "--web.listen-address=:9999"]).listen_address == ":9999"


@pytest.mark.parametrize(
    "flag",
    [
        "--web.max-connections=0",
        "--web.max-connections=x",
        "--web.read-timeout=0s",
        "--web.read-timeout=soon",
    ],
)
def test_bad_web_limits_exit_2_naming_the_flag(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        parse_args([flag])
    assert e.value.code == 2
    assert flag.split("=", maxsplit=1)[0] in capsys.readouterr().err


def test_help_shows_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for default in ["config.yaml", ":9733", "/metrics", "512", "30s", "info", "logfmt"]:
        assert f"default: {default}" in out


@pytest.mark.parametrize("level", ["debug", "info", "warn", "error"])
def test_every_documented_log_level_is_accepted(level: str) -> None:
    assert parse_args([f"--log.level={level}"]).log_level == level


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (":9733", (None, 9733)),
        ("0.0.0.0:9733", ("0.0.0.0", 9733)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("localhost:8080", ("localhost", 8080)),
        ("[::1]:9733", ("::1", 9733)),
        ("[::]:9733", ("::", 9733)),
    ],
)
def test_split_address(address: str, expected: tuple[str | None, int]) -> None:
    """`:port` means every interface; IPv6 hosts come in brackets."""
    assert split_address(address) == expected


@pytest.mark.parametrize("address", ["9733", "localhost", "host:", "host:http", ":65536", ":-1", ""])
def test_split_address_rejects(address: str) -> None:
    with pytest.raises(ValueError, match="must be host:port or :port"):
        split_address(address)


# ---- the real process --------------------------------------------------------------------------


def test_version() -> None:
    """`--version` prints the version and exits 0, from the installed console script too."""
    script = Path(sys.executable).parent / "livestream-exporter"
    assert script.exists(), "the console script livestream-exporter is not installed"
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"livestream-exporter, version {__version__} ")
    assert "Traceback" not in result.stderr


def test_config_check_prints_what_would_be_polled(tmp_path: Path) -> None:
    """Sources, targets with their stream labels, effective intervals and budgets; exit 0."""
    config = write(
        tmp_path,
        {
            "global": {"interval": "1m"},
            "sources": [
                source("main", targets=["a", "b"]),
                {
                    **source("fast", targets=["c"]),
                    "interval": "15s",
                    "rate_limit": [{"requests": 100, "per": "1m"}, {"requests": 1000, "per": "1h"}],
                    "targets": [{"stream_id": "c", "name": "Channel C"}],
                },
            ],
        },
    )
    result = run("--config.file", str(config), "--config.check")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    out = result.stdout
    assert f"{config}: configuration is valid, 2 source(s)" in out
    lines = out.splitlines()
    main = lines.index("source main (provider testvendor) http://127.0.0.1:9")
    assert lines[main + 1] == (
        "  interval 1m, requests per cycle 2, budget 600/1m (the vendor's limit); "
        "list requests 100/1s (the vendor's limit)"
    )
    assert "  target a -> stream='tv/a'" in lines
    assert "  target b -> stream='tv/b'" in lines
    fast = lines.index("source fast (provider testvendor) http://127.0.0.1:9")
    assert lines[fast + 1] == (
        "  interval 15s, requests per cycle 1, budget 100/1m and 1000/1h (set by rate_limit); "
        "list requests 100/1s (the vendor's limit)"
    )
    assert "  target c -> stream='Channel C'" in lines
    assert API_KEY not in out + result.stderr


def test_config_check_shows_the_interval_lengthened_by_the_budget(tmp_path: Path) -> None:
    """120 targets at 30s with 60 requests per minute: one cycle needs 2m, and the check says so."""
    config = write(
        tmp_path,
        {
            "global": {"interval": "30s"},
            "sources": [source("big", targets=120, rate_limit=[{"requests": 60, "per": "1m"}])],
        },
    )
    result = run("--config.file", str(config), "--config.check")
    assert result.returncode == 0, result.stderr
    assert (
        "  interval 2m (lengthened from 30s by the rate limit), requests per cycle 120, "
        "budget 60/1m (set by rate_limit); list requests 100/1s (the vendor's limit)"
    ) in result.stdout.splitlines()
    assert "  target s119 -> stream='tv/s119'" in result.stdout


def test_config_check_with_discovery(tmp_path: Path) -> None:
    config = write(tmp_path, {"sources": [source("disc", targets=[], discover=True)]})
    result = run("--config.file", str(config), "--config.check")
    assert result.returncode == 0, result.stderr
    assert "  discovery: on (targets are added and removed as the vendor lists them)" in result.stdout


def test_config_check_expands_env(tmp_path: Path) -> None:
    config = write(tmp_path, {"sources": [source(credentials={"api_key": "${CLI_TEST_KEY}"})]})
    assert run("--config.file", str(config), "--config.check").returncode == 2
    result = run("--config.file", str(config), "--config.check", env={"CLI_TEST_KEY": "k"})
    assert result.returncode == 0, result.stderr


BROKEN = [
    (
        "unknown key in a source",
        {"sources": [source(colour="red")]},
        "sources[0] (tv).colour: unknown key (valid keys: name, provider, base_url, interval, rate_limit, "
        "max_in_flight, credentials, targets, targets_files, targets_url, discover, batch_size, app_metrics)",
    ),
    (
        "bad duration",
        {"global": {"interval": "5 minutes"}, "sources": [source()]},
        "global.interval: '5 minutes' is not a duration: use a number and a unit, like 500ms, 15s, 5m or 1h",
    ),
    (
        "wrong type",
        {"sources": [source(rate_limit=[{"requests": "many", "per": "1m"}])]},
        "sources[0] (tv).rate_limit[0].requests: Input should be a valid integer, "
        "unable to parse string as an integer",
    ),
    (
        "unknown provider",
        {"sources": [{**source(), "provider": "youtube"}]},
        "sources[0] (tv).provider: unknown provider 'youtube' (valid: {providers})",
    ),
    (
        "duplicate source names",
        {"sources": [source("x"), source("x")]},
        "sources[1] (x).name: duplicate source name 'x' (also sources[0])",
    ),
    (
        "missing credentials",
        {"sources": [{k: v for k, v in source().items() if k != "credentials"}]},
        "sources[0] (tv).credentials: missing required key: needs api_key (or api_key_file)",
    ),
    (
        "undefined environment variable",
        {"sources": [source(credentials={"api_key": "${CLI_UNDEFINED_VAR}"})]},
        "sources[0] (tv).credentials.api_key: environment variable ${CLI_UNDEFINED_VAR} is not defined",
    ),
    (
        "unreadable credential file",
        {"sources": [source(credentials={"api_key_file": "/nonexistent"})]},
        "sources[0] (tv).credentials.api_key_file: cannot read /nonexistent: No such file or directory",
    ),
    (
        "invalid YAML",
        "sources:\n  - name: tv\n   provider: testvendor\n",
        "invalid YAML: line 3, column 4: expected <block end>, but found '<block mapping start>'",
    ),
    ("empty file", "", "the file is empty; it needs at least one entry under sources"),
]


@pytest.mark.parametrize(("doc", "expected"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_config_check_on_a_broken_file_exits_2_with_one_message(
    tmp_path: Path, doc: dict[str, Any] | str, expected: str
) -> None:
    config = write(tmp_path, doc)
    result = run("--config.file", str(config), "--config.check")
    expected = expected.replace("{providers}", ", ".join(sorted({*PROVIDERS, "testvendor"})))
    assert_one_message(result, f"{config}: {expected}")
    assert result.stdout == ""


def test_broken_config_without_check_exits_2_too(tmp_path: Path) -> None:
    """The daemon refuses to start on an invalid file, with the same message."""
    config = write(tmp_path, {"sources": [source(interval=30)]})
    result = run("--config.file", str(config), "--web.listen-address", "127.0.0.1:0")
    assert_one_message(
        result, f"{config}: sources[0] (tv).interval: must be a duration string like 30s or 5m, not int 30"
    )


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    for extra in (["--config.check"], ["--web.listen-address", "127.0.0.1:0"]):
        result = run("--config.file", str(missing), *extra)
        assert_one_message(result, f"{missing}: cannot read the configuration: No such file or directory")


def test_default_config_file_is_config_yaml_in_the_working_directory(tmp_path: Path) -> None:
    """Without --config.file the exporter reads ./config.yaml."""
    write(tmp_path, {"sources": [source("from-cwd")]})
    result = subprocess.run(
        [sys.executable, "-m", "tests.run_exporter", "--config.check"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "config.yaml: configuration is valid, 1 source(s)" in result.stdout
    assert "source from-cwd " in result.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["--config.check", "extra-positional"], "unrecognized arguments: extra-positional"),
        (["--web.listen-address", "nope"], "--web.listen-address 'nope' must be host:port or :port"),
        (["--web.listen-address", "127.0.0.1:99999"], "must be host:port or :port"),
        (["--web.listen-address", "127.0.0.1:"], "must be host:port or :port"),
        (["--log.level", "verbose"], "argument --log.level: invalid choice: 'verbose'"),
        (["--log.format", "xml"], "argument --log.format: invalid choice: 'xml'"),
        (["--web.telemetry-path", "metrics"], "--web.telemetry-path 'metrics' must start with /"),
        (["--web.telemetry-path", "/-/healthy"], "must start with / and not clash with another page"),
    ],
    ids=[
        "unknown-flag",
        "positional",
        "listen-not-an-address",
        "listen-port-out-of-range",
        "listen-no-port",
        "log-level",
        "log-format",
        "telemetry-path-relative",
        "telemetry-path-clash",
    ],
)
def test_invalid_flags_exit_2(tmp_path: Path, args: list[str], fragment: str) -> None:
    """Invalid flags exit 2 with one usage error, before anything is loaded or served."""
    config = write(tmp_path, {"sources": [source()]})
    result = run("--config.file", str(config), *args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("livestream-exporter: error: ") and fragment in last, result.stderr
    assert result.stdout == ""


def test_listen_address_in_use_exits_1(tmp_path: Path) -> None:
    """A well-formed address that cannot be bound is 'anything else': exit 1, logged, no traceback."""
    config = write(tmp_path, {"sources": [source()]})
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert 'event="cannot listen"' in result.stderr and f"127.0.0.1:{port}" in result.stderr


# ---- --config.check with --web.config.file -----------------------------------------------------


def test_config_check_validates_a_good_web_config(tmp_path: Path) -> None:
    config = write(tmp_path, {"sources": [source()]})
    hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4)).decode()
    web = write(tmp_path, {"basic_auth_users": {"admin": hashed}}, "web.yaml")
    result = run("--config.file", str(config), "--config.check", "--web.config.file", str(web))
    assert result.returncode == 0, result.stderr
    assert f"{web}: web configuration is valid" in result.stdout


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            {"basic_auth_users": {"admin": "plaintext"}},
            "basic_auth_users.admin: must be a bcrypt hash (e.g. from htpasswd -nBC 10)",
        ),
        (
            {"basic_auth": {"admin": "x"}},
            "basic_auth: unknown key (valid keys: tls_server_config, basic_auth_users, http_server_config)",
        ),
        (
            {"tls_server_config": {"cert_file": "/nonexistent.crt", "key_file": "/nonexistent.key"}},
            "tls_server_config: cannot load the certificate or key: [Errno 2] No such file or directory",
        ),
        (
            "tls_server_config: [\n",
            "invalid YAML: line 2, column 1: expected the node content, but found '<stream end>'",
        ),
    ],
    ids=["plain-password", "unknown-key", "missing-cert", "invalid-yaml"],
)
def test_config_check_with_a_broken_web_config_exits_2(
    tmp_path: Path, doc: dict[str, Any] | str, expected: str
) -> None:
    config = write(tmp_path, {"sources": [source()]})
    web = write(tmp_path, doc, "web.yaml")
    result = run("--config.file", str(config), "--config.check", "--web.config.file", str(web))
    assert_one_message(result, f"{web}: {expected}")


def test_missing_web_config_exits_2(tmp_path: Path) -> None:
    config = write(tmp_path, {"sources": [source()]})
    web = tmp_path / "absent-web.yaml"
    result = run("--config.file", str(config), "--config.check", "--web.config.file", str(web))
    assert_one_message(result, f"{web}: cannot read the web configuration: No such file or directory")
