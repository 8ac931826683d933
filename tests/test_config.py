"""Configuration loading: what a valid file turns into, and one readable error for a broken one.

Every broken file is one readable `file: key.path: what is wrong` line, never a traceback.
The table below maps broken YAML to the exact message, in the spirit of blackbox_exporter's
table of invalid config files.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from exporter.config.loader import Config, load_config
from exporter.config.problems import ConfigError
from exporter.config.registry import PROVIDERS
from exporter.model.windows import Window
from exporter.process import logsetup as exlog
from exporter.process.cli import main

SECRET = "s3cr3t-value-that-must-never-leak"


def src(
    *,
    name: str = "tv",
    provider: str | None = "testvendor",
    base_url: str | None = "http://127.0.0.1:9",
    credentials: str | None = "{api_key: k}",
    targets: str | None = "[{stream_id: a}]",
    extra: str = "",
) -> str:
    """One entry of `sources` as YAML text; each value is raw YAML, None leaves the key out."""
    lines = [f"  - name: {name}"]
    for key, value in (
        ("provider", provider),
        ("base_url", base_url),
        ("credentials", credentials),
        ("targets", targets),
    ):
        if value is not None:
            lines.append(f"    {key}: {value}")
    lines += [f"    {line}" for line in extra.splitlines()]
    return "\n".join(lines) + "\n"


def sources(*entries: str) -> str:
    return "sources:\n" + "".join(entries)


VALID = sources(src())

# (id, YAML text, the one expected problem: `key.path: message`; {providers} is filled in)
BROKEN: list[tuple[str, str, str]] = [
    (
        "unknown top-level key",
        VALID + "scrape: true\n",
        "scrape: unknown key (valid keys: global, sources, cluster)",
    ),
    (
        "unknown key in global",
        "global: {intervall: 30s}\n" + VALID,
        "global.intervall: unknown key (valid keys: interval, timeout, stale_after)",
    ),
    (
        "unknown key in a source lists the provider's keys",
        sources(src(extra="colour: red")),
        "sources[0] (tv).colour: unknown key (valid keys: name, provider, base_url, interval, rate_limit, "
        "max_in_flight, credentials, targets, targets_files, targets_url, discover, batch_size, app_metrics)",
    ),
    (
        "unknown key in a target",
        sources(src(targets="[{stream_id: a, room: 1}]")),
        "sources[0] (tv).targets[0].room: unknown key (valid keys: name, stream_id)",
    ),
    (
        "unknown credential key",
        sources(src(credentials="{api_key: k, token: t}")),
        "sources[0] (tv).credentials.token: unknown key (valid keys: api_key)",
    ),
    (
        "interval without a unit",
        "global: {interval: 30}\n" + VALID,
        "global.interval: must be a duration string like 30s or 5m, not int 30",
    ),
    (
        "bad duration",
        "global: {timeout: 5 minutes}\n" + VALID,
        "global.timeout: '5 minutes' is not a duration: use a number and a unit, like 500ms, 15s, 5m or 1h",
    ),
    (
        "zero duration",
        sources(src(extra="interval: 0s")),
        "sources[0] (tv).interval: must be longer than 0s",
    ),
    (
        "rate_limit requests not a number",
        sources(src(extra="rate_limit: [{requests: many, per: 1m}]")),
        "sources[0] (tv).rate_limit[0].requests: Input should be a valid integer, "
        "unable to parse string as an integer",
    ),
    (
        "rate_limit requests 0",
        sources(src(extra="rate_limit: [{requests: 0, per: 1m}]")),
        "sources[0] (tv).rate_limit[0].requests: Input should be greater than 0",
    ),
    (
        "rate_limit window without a duration",
        sources(src(extra="rate_limit: [{requests: 10, per: 60}]")),
        "sources[0] (tv).rate_limit[0].per: must be a duration string like 30s or 5m, not int 60",
    ),
    (
        "rate_limit empty",
        sources(src(extra="rate_limit: []")),
        "sources[0] (tv).rate_limit: must not be empty",
    ),
    (
        "unknown provider lists the valid ones",
        sources(src(provider="youtube")),
        "sources[0] (tv).provider: unknown provider 'youtube' (valid: {providers})",
    ),
    (
        "missing provider",
        sources(src(provider=None)),
        "sources[0] (tv).provider: missing required key (valid: {providers})",
    ),
    (
        "duplicate source names",
        sources(src(), src(targets="[{stream_id: b}]")),
        "sources[1] (tv).name: duplicate source name 'tv' (also sources[0])",
    ),
    (
        "source name with spaces",
        sources(src(name="'my source'")),
        "sources[0] (my source).name: must start with a letter or digit and hold only letters, "
        "digits and _ . : -",
    ),
    (
        "duplicate target",
        sources(src(targets="[{stream_id: a}, {stream_id: b}, {stream_id: a}]")),
        "sources[0] (tv).targets[2]: duplicate target 'a' (also targets[0])",
    ),
    (
        "two targets with the same stream label",
        sources(src(targets="[{stream_id: a, name: x}, {stream_id: b, name: x}]")),
        "sources[0] (tv).targets[1].name: stream label 'x' is already used by targets[0]",
    ),
    (
        "missing credentials",
        sources(src(credentials=None)),
        "sources[0] (tv).credentials: missing required key: needs api_key (or api_key_file)",
    ),
    (
        "credentials not a mapping",
        sources(src(credentials="just-a-string")),
        "sources[0] (tv).credentials: must be a mapping of keys to values",
    ),
    (
        "missing required credential key",
        sources(src(credentials="{}")),
        "sources[0] (tv).credentials.api_key: missing required key (or api_key_file)",
    ),
    (
        "undefined environment variable names the variable and the key",
        sources(src(credentials="{api_key: '${TV_API_KEY_UNSET}'}")),
        "sources[0] (tv).credentials.api_key: environment variable ${TV_API_KEY_UNSET} is not defined",
    ),
    (
        "undefined environment variable outside credentials",
        sources(src(base_url="'${TV_HOST_UNSET}/v1'")),
        "sources[0] (tv).base_url: environment variable ${TV_HOST_UNSET} is not defined",
    ),
    (
        "unreadable credential file",
        sources(src(credentials="{api_key_file: /nonexistent/api.key}")),
        "sources[0] (tv).credentials.api_key_file: cannot read /nonexistent/api.key: "
        "No such file or directory",
    ),
    (
        "credential file that is a directory",
        sources(src(credentials="{api_key_file: /}")),
        "sources[0] (tv).credentials.api_key_file: cannot read /: not a regular file",
    ),
    (
        "credential file path not a string",
        sources(src(credentials="{api_key_file: [a, b]}")),
        "sources[0] (tv).credentials.api_key_file: must be a file path",
    ),
    (
        "both k and k_file",
        sources(src(credentials="{api_key: k, api_key_file: /etc/hostname}")),
        "sources[0] (tv).credentials.api_key_file: give either api_key or api_key_file, not both",
    ),
    (
        "duplicate YAML key",
        sources(src(extra="provider: testvendor")),
        "invalid YAML: line 7, column 5: key 'provider' given twice",
    ),
    (
        "invalid YAML syntax gives line and column",
        "global:\n  interval: 30s\n   timeout: 1s\n" + VALID,
        "invalid YAML: line 3, column 11: mapping values are not allowed here",
    ),
    (
        "unclosed flow sequence",
        sources(src(targets="[{stream_id: a}")),
        "invalid YAML: line 7, column 1: expected ',' or ']', but got '<stream end>'",
    ),
    (
        "empty file",
        "",
        "the file is empty; it needs at least one entry under sources",
    ),
    (
        "only comments",
        "# nothing here yet\n",
        "the file is empty; it needs at least one entry under sources",
    ),
    (
        "top level not a mapping",
        "- tv\n",
        "the top level must be a mapping with global and sources",
    ),
    (
        "no sources key",
        "global: {interval: 30s}\n",
        "sources: missing required key",
    ),
    (
        "sources empty",
        "sources: []\n",
        "sources: must not be empty",
    ),
    (
        "sources not a list",
        "sources: {tv: 1}\n",
        "sources: must be a list",
    ),
    (
        "source entry not a mapping",
        "sources: [tv]\n",
        "sources: entry 0 must be a mapping with name, provider, credentials and targets",
    ),
    (
        "no targets and no discovery",
        sources(src(targets=None)),
        "sources[0] (tv).targets: no targets: list at least one, give targets_files or targets_url, "
        "or set discover: true where the provider has it",
    ),
    (
        "targets not a list",
        sources(src(targets="a")),
        "sources[0] (tv).targets: must be a list",
    ),
    (
        "base_url not http(s)",
        sources(src(base_url="ftp://files.example.com")),
        "sources[0] (tv).base_url: must be an http:// or https:// URL",
    ),
    (
        "base_url required when the provider has no default",
        sources(src(base_url=None)),
        "sources[0] (tv).base_url: missing required key: provider testvendor has no default URL",
    ),
    (
        "provider-specific key with the wrong type",
        sources(src(extra="discover: maybe")),
        "sources[0] (tv).discover: Input should be a valid boolean, unable to interpret input",
    ),
]


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_table_helper_builds_a_valid_file(tmp_path: Path) -> None:
    """The table's base file is valid, so each broken case fails for its own reason only."""
    config = load_config(write(tmp_path, VALID), env={})
    assert [s.name for s in config.sources] == ["tv"]
    assert [t.stream_id for t in config.sources[0].targets] == ["a"]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_broken_config_names_file_and_key_path(tmp_path: Path, text: str, expected: str) -> None:
    """Each kind of broken file is exactly one `file: key.path: message` line."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    expected = expected.replace("{providers}", ", ".join(sorted(PROVIDERS)))
    assert str(info.value) == f"{path}: {expected}"
    assert info.value.file == str(path)
    assert len(info.value.problems) == 1


def test_every_problem_is_reported_one_per_line(tmp_path: Path) -> None:
    """Several broken sources are reported together, each on its own line with its own path."""
    path = write(
        tmp_path,
        sources(
            src(name="one", extra="interval: 5 minutes"),
            src(name="two", credentials="{api_key_file: /nonexistent/key}"),
            src(name="three", provider="nope"),
        ),
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert sorted(str(info.value).splitlines()) == [
        f"{path}: sources[0] (one).interval: '5 minutes' is not a duration: use a number and a unit, "
        "like 500ms, 15s, 5m or 1h",
        f"{path}: sources[1] (two).credentials.api_key_file: cannot read /nonexistent/key: "
        "No such file or directory",
        f"{path}: sources[2] (three).provider: unknown provider 'nope' "
        f"(valid: {', '.join(sorted(PROVIDERS))})",
    ]


def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value) == f"{path}: cannot read the configuration: No such file or directory"


# ---- what a valid file turns into ----------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    """global defaults are interval 30s, timeout 10s, stale_after 5m."""
    config = load_config(write(tmp_path, VALID), env={})
    assert (config.global_.interval, config.global_.timeout, config.global_.stale_after) == (
        30.0,
        10.0,
        300.0,
    )
    (source,) = config.sources
    assert source.interval is None and source.rate_limit is None
    assert config.interval_of(source) == 30.0
    assert config.windows_of(source) == {"default": (Window(600, 60.0),), "list": (Window(100, 1.0),)}
    assert config.file == str(tmp_path / "config.yaml")


def test_prometheus_durations(tmp_path: Path) -> None:
    text = "global: {interval: 1h30m, timeout: 500ms, stale_after: 1d}\n" + VALID
    config = load_config(write(tmp_path, text), env={})
    assert (config.global_.interval, config.global_.timeout, config.global_.stale_after) == (
        5400.0,
        0.5,
        86400.0,
    )


def test_per_source_interval_and_rate_limit_override(tmp_path: Path) -> None:
    """`interval` and `rate_limit` of a source override global.interval and the provider default;
    `rate_limit` replaces the default bucket only and several windows all hold."""
    text = "global: {interval: 1m}\n" + sources(
        src(
            name="custom",
            extra="interval: 15s\nrate_limit:\n  - {requests: 100, per: 1m}\n  - {requests: 1000, per: 1h}",
        ),
        src(name="plain"),
    )
    config = load_config(write(tmp_path, text), env={})
    custom, plain = config.sources
    assert config.interval_of(custom) == 15.0
    assert config.interval_of(plain) == 60.0
    assert config.windows_of(custom) == {
        "default": (Window(100, 60.0), Window(1000, 3600.0)),
        "list": (Window(100, 1.0),),
    }
    assert config.windows_of(plain)["default"] == (Window(600, 60.0),)


def test_env_expansion_and_dollar_escape(tmp_path: Path) -> None:
    """`${VAR}` is expanded in any string; `$$` is a literal `$`."""
    text = sources(
        src(
            name="${SRC_NAME}",
            base_url="'http://${TV_HOST}:9/api'",
            credentials="{api_key: 'pa$$word-${TV_KEY}-$${NOT_A_VAR}'}",
            targets="[{stream_id: '${STREAM}', name: 'cost $$5'}]",
        )
    )
    env = {"SRC_NAME": "from-env", "TV_HOST": "10.0.0.1", "TV_KEY": "abc", "STREAM": "s1"}
    config = load_config(write(tmp_path, text), env=env)
    (source,) = config.sources
    assert source.name == "from-env"
    assert source.base_url == "http://10.0.0.1:9/api"
    assert source.credentials.api_key.get_secret_value() == "pa$word-abc-${NOT_A_VAR}"
    assert source.targets[0].stream_id == "s1"
    assert source.targets[0].name == "cost $5"


def test_load_config_reads_the_process_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TV_TEST_KEY", "from-os-environ")
    text = sources(src(credentials="{api_key: '${TV_TEST_KEY}'}"))
    config = load_config(write(tmp_path, text))
    assert config.sources[0].credentials.api_key.get_secret_value() == "from-os-environ"


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\n\n", ""])
def test_credential_file_read_with_trailing_newline_stripped(tmp_path: Path, ending: str) -> None:
    """`k_file: /path` is read into `k`, trailing newline stripped; the path may use ${ENV}."""
    (tmp_path / "api.key").write_text(f"key-from-file{ending}", newline="")
    text = sources(src(credentials="{api_key_file: '${SECRETS}/api.key'}"))
    config = load_config(write(tmp_path, text), env={"SECRETS": str(tmp_path)})
    assert config.sources[0].credentials.api_key.get_secret_value() == "key-from-file"


def test_credential_file_content_is_taken_verbatim(tmp_path: Path) -> None:
    """A secret may contain `$`: a file's content is not expanded like the YAML text."""
    (tmp_path / "api.key").write_text("a$${b}${C} x\n")
    text = sources(src(credentials=f"{{api_key_file: {tmp_path / 'api.key'}}}"))
    config = load_config(write(tmp_path, text), env={})
    assert config.sources[0].credentials.api_key.get_secret_value() == "a$${b}${C} x"


def test_credential_file_is_read_again_on_each_load(tmp_path: Path) -> None:
    """Reload reads `k_file` again, so a rotated secret is picked up."""
    key = tmp_path / "api.key"
    key.write_text("first\n")
    path = write(tmp_path, sources(src(credentials=f"{{api_key_file: {key}}}")))
    assert load_config(path, env={}).sources[0].credentials.api_key.get_secret_value() == "first"
    key.write_text("second\n")
    assert load_config(path, env={}).sources[0].credentials.api_key.get_secret_value() == "second"


def test_config_is_frozen(tmp_path: Path) -> None:
    """The loaded configuration cannot be changed by the code that uses it."""
    config = load_config(write(tmp_path, VALID), env={})
    source = config.sources[0]
    with pytest.raises(ValidationError, match="frozen"):
        config.global_.interval = 1.0
    with pytest.raises(ValidationError, match="frozen"):
        source.interval = 1.0
    with pytest.raises(ValidationError, match="frozen"):
        source.targets[0].stream_id = "b"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.sources = ()  # type: ignore[misc]
    assert isinstance(config, Config)
    assert isinstance(config.sources, tuple) and isinstance(source.targets, tuple)


def test_base_url_trailing_slash_removed(tmp_path: Path) -> None:
    """The exporter appends documented paths to base_url, so a trailing slash must not double up."""
    config = load_config(write(tmp_path, sources(src(base_url="https://api.example.com/v4/"))), env={})
    assert config.base_url_of(config.sources[0]) == "https://api.example.com/v4"


def test_secrets_collects_every_credential_value(tmp_path: Path) -> None:
    (tmp_path / "key2").write_text("second-secret\n")
    text = sources(
        src(name="one", credentials="{api_key: first-secret}"),
        src(name="two", credentials=f"{{api_key_file: {tmp_path / 'key2'}}}"),
        src(name="three", credentials="{api_key: '${THIRD}'}"),
    )
    config = load_config(write(tmp_path, text), env={"THIRD": "third-secret"})
    assert config.secrets() == {"first-secret", "second-secret", "third-secret"}


def test_credentials_are_hidden_in_repr(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, sources(src(credentials=f"{{api_key: {SECRET}}}"))), env={})
    assert SECRET not in repr(config)
    assert SECRET not in str(config.sources[0])


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        (f"{{api_key: [{SECRET}]}}", "sources[0] (tv).credentials.api_key: Input should be a valid string"),
        (
            f"{{api_key: {{value: {SECRET}}}}}",
            "sources[0] (tv).credentials.api_key: Input should be a valid string",
        ),
        (
            "{api_key: 918273645546372819}",
            "sources[0] (tv).credentials.api_key: Input should be a valid string",
        ),
        (
            f"{{api_key: {SECRET}, api_key_file: /etc/hostname}}",
            "sources[0] (tv).credentials.api_key_file: give either api_key or api_key_file, not both",
        ),
    ],
    ids=["list", "mapping", "number", "both-k-and-k_file"],
)
def test_error_about_a_credential_never_contains_its_value(
    tmp_path: Path, credentials: str, expected: str
) -> None:
    """No secret appears in error messages, even when the error is about the very field that
    holds it."""
    path = write(tmp_path, sources(src(credentials=credentials)))
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert SECRET not in message and "918273645546372819" not in message
    assert message == f"{path}: {expected}"


def test_error_elsewhere_in_a_source_does_not_show_its_secret(tmp_path: Path) -> None:
    (tmp_path / "api.key").write_text(f"{SECRET}\n")
    text = sources(
        src(credentials=f"{{api_key_file: {tmp_path / 'api.key'}}}", extra="interval: 30"),
        src(name="b", credentials=f"{{api_key: {SECRET}}}", targets="[{stream_id: x, name: ''}]"),
    )
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert SECRET not in message
    assert f"{path}: sources[0] (tv).interval: must be a duration string" in message
    assert f"{path}: sources[1] (b).targets[0].name:" in message


def test_sources_sharing_credentials_are_warned_about(tmp_path):
    """Vendors count requests per credential; two sources on one account share its budget."""
    path = tmp_path / "c.yaml"
    path.write_text(
        """
sources:
  - {name: a, provider: fermion, credentials: {api_key: k1234}, targets: [{live_event_session_id: x}]}
  - {name: b, provider: fermion, credentials: {api_key: k1234}, targets: [{live_event_session_id: y}]}
  - {name: c, provider: fermion, credentials: {api_key: other}, targets: [{live_event_session_id: z}]}
"""
    )
    config = load_config(path)
    (warning,) = config.warnings()
    assert "sources a and b use the same fermion credentials" in warning
    assert "k1234" not in warning


# -- values that load but cannot work: refused at load time, exit 2 under --config.check --


def check_exit_code(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`--config.check` run in process: (exit code, stderr)."""
    try:
        code = main(["--config.file", str(path), "--config.check"])
    finally:  # main() pointed the logs at the captured stderr
        exlog.setup("info", "logfmt", stream=sys.__stderr__)
    return code, capsys.readouterr().err


def test_durations_longer_than_a_week_are_config_errors(tmp_path, capsys):
    """`interval: 10000y`, which would overflow the scheduler's clock arithmetic once polling
    started, is a configuration error (exit 2); `1w` is the longest duration accepted."""
    path = write(tmp_path, "global: {interval: 10000y}\n" + VALID)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value) == f"{path}: global.interval: must be at most 1w"
    assert load_config(write(tmp_path, "global: {interval: 1w}\n" + VALID), env={}).global_.interval == 604800
    path = write(tmp_path, "global: {interval: 10000y}\n" + VALID)
    code, err = check_exit_code(path, capsys)
    assert code == 2, err
    assert "global.interval: must be at most 1w" in err and "Traceback" not in err


def test_empty_credentials_are_config_errors(tmp_path, capsys):
    """`api_key: ""` (an unset variable, a mis-mounted secret) is a configuration error (exit 2),
    not a source whose every poll fails as an auth error."""
    fermion = {"provider": "fermion", "targets": "[{live_event_session_id: x}]"}
    path = write(tmp_path, sources(src(**fermion, credentials="{api_key: ''}")))
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value) == f"{path}: sources[0] (tv).credentials.api_key: must not be empty"
    code, err = check_exit_code(path, capsys)
    assert code == 2, err
    assert "sources[0] (tv).credentials.api_key: must not be empty" in err


@pytest.mark.parametrize("content", ["", "\n", "\r\n"])
def test_empty_credential_file_is_a_config_error(tmp_path, capsys, content):
    """`api_key_file` naming an empty file does not give an empty key: the error is `<path> is
    empty` at the `api_key_file` key path (exit 2); a missing configuration file is one line too."""
    key = tmp_path / "api.key"
    key.write_text(content, newline="")
    path = write(tmp_path, sources(src(credentials=f"{{api_key_file: {key}}}")))
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value) == f"{path}: sources[0] (tv).credentials.api_key_file: {key} is empty"
    code, err = check_exit_code(path, capsys)
    assert code == 2, err
    assert f"sources[0] (tv).credentials.api_key_file: {key} is empty" in err


def test_a_duration_no_float_holds_is_a_readable_error_at_its_key(tmp_path: Path) -> None:
    text = "global: {interval: " + "9" * 400 + "s}\n" + VALID
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    ((path, message),) = info.value.problems
    assert path == "global.interval" and "longer than any duration" in message
