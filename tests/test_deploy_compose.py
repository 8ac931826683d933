"""The compose quickstart: deploy/compose/.

compose.yaml runs the exporter in --demo mode with Prometheus (the repository's rules),
Alertmanager and Grafana (the repository's dashboards); compose.config.yaml is an overlay
that swaps --demo for a real configuration with credentials as compose secrets;
compose.ha.yaml is a stack of its own: three replicas sharing the budgets through Redis,
polling a simulator container with ha/config.yaml.

No container runs here: each file is checked by the tool that owns its format
(check-jsonschema with the compose specification, promtool, amtool, the exporter's own
flag parser and --config.check), and the files are checked against each other: every
bind-mounted path exists, the ports, service names, paths and secret names agree.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from exporter.process.settings import parse_args, split_address
from exporter.simulator.core import demo_config
from tests.tooling import ROOT, config_check, need

COMPOSE_DIR = ROOT / "deploy" / "compose"
BASE = COMPOSE_DIR / "compose.yaml"
OVERLAY = COMPOSE_DIR / "compose.config.yaml"
HA = COMPOSE_DIR / "compose.ha.yaml"
EXPORTER = "livestream-exporter"
#: where compose mounts a secret in the container
SECRETS_MOUNT = "/run/secrets/"


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


# ---- the compose merge rules this repository's files use -------------------------------------


def split_volume(spec: str | dict[str, Any]) -> tuple[str | None, str, str]:
    """(source, target, mode) of a short ("src:target:ro") or long volume entry."""
    if isinstance(spec, dict):
        return spec.get("source"), spec["target"], "ro" if spec.get("read_only") else "rw"
    parts = spec.split(":")
    if len(parts) == 1:
        return None, parts[0], "rw"
    return parts[0], parts[1], parts[2] if len(parts) > 2 else "rw"


def _merge_by(key: Any, base: list[Any], override: list[Any]) -> list[Any]:
    out = {key(item): item for item in base}
    out.update({key(item): item for item in override})
    return list(out.values())


def _merge_service(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        if k in ("command", "entrypoint") or k not in out:
            out[k] = v
        elif k == "volumes":
            out[k] = _merge_by(lambda s: split_volume(s)[1], out[k], v)
        elif k in ("secrets", "configs"):
            out[k] = _merge_by(lambda s: s if isinstance(s, str) else s["source"], out[k], v)
        elif isinstance(v, dict):
            out[k] = {**out[k], **v}
        elif isinstance(v, list):
            out[k] = out[k] + [x for x in v if x not in out[k]]
        else:
            out[k] = v
    return out


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`docker compose -f base -f override config`, for the keys these files use: services
    merged key by key (`command` replaced, volumes by target, secrets by name), top-level
    mappings merged."""
    out = dict(base)
    for k, v in override.items():
        if k == "services":
            services = dict(out.get("services", {}))
            for name, svc in v.items():
                services[name] = _merge_service(services.get(name, {}), svc)
            out[k] = services
        elif isinstance(v, dict):
            out[k] = {**out.get(k, {}), **v}
        else:
            out[k] = v
    return out


def merged() -> dict[str, Any]:
    return merge(load(BASE), load(OVERLAY))


def bind_mounts(project: dict[str, Any], service: str) -> list[tuple[Path, str]]:
    """(host path, container path) of every bind mount of `service`, host paths resolved
    against deploy/compose/ like compose does."""
    out = []
    for spec in project["services"][service].get("volumes", []):
        source, target, _ = split_volume(spec)
        if source is not None and source.startswith((".", "/")):
            out.append(((COMPOSE_DIR / source).resolve(), target))
    return out


def container_layout(project: dict[str, Any], service: str, root: Path) -> Path:
    """Copy every bind mount of `service` to `root` + its container path; returns `root`."""
    for host, target in bind_mounts(project, service):
        dest = root / target.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if host.is_dir():
            shutil.copytree(host, dest)
        else:
            shutil.copy(host, dest)
    return root


def host_port(target: str) -> int:
    return split_address(target)[1]


# ---- the files are valid compose files -------------------------------------------------------


@pytest.mark.parametrize("which", ["compose.yaml", "compose.config.yaml", "merged", "compose.ha.yaml"])
def test_compose_file_matches_the_compose_specification(which: str, tmp_path: Path) -> None:
    tool = need("check-jsonschema", "PyPI check-jsonschema, in .venv by pip install -e '.[dev]'")
    if which == "merged":
        path = tmp_path / "merged.yaml"
        path.write_text(yaml.safe_dump(merged(), sort_keys=False))
    else:
        path = COMPOSE_DIR / which
    r = subprocess.run(
        [tool, "--builtin-schema", "vendor.compose-spec", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("which", ["merged", "compose.ha.yaml"])
def test_every_bind_mounted_path_exists_in_the_repository(which: str) -> None:
    project = merged() if which == "merged" else load(COMPOSE_DIR / which)
    missing = [
        f"{name}: {host.relative_to(ROOT) if host.is_relative_to(ROOT) else host}"
        for name in project["services"]
        for host, _ in bind_mounts(project, name)
        if not host.exists()
    ]
    built = {name: svc["build"] for name, svc in project["services"].items() if "build" in svc}
    assert EXPORTER in built or any(name.startswith(EXPORTER) for name in built), sorted(built)
    for name, build in built.items():
        context = (COMPOSE_DIR / build["context"]).resolve()
        assert context == ROOT, f"{name}: build context {build['context']} is not the repository root"
        if not (context / build.get("dockerfile", "Dockerfile")).is_file():
            missing.append(f"{name}: build.dockerfile {build.get('dockerfile', 'Dockerfile')}")
    assert not missing, f"bind-mounted or built from, but not in the repository: {missing}"


def test_secret_files_are_left_to_the_user_and_never_committed() -> None:
    """The only host files allowed to be missing: the overlay's secrets, under a git-ignored
    directory the user creates (compose.config.yaml says how)."""
    secrets = load(OVERLAY)["secrets"]
    assert secrets, "compose.config.yaml gives no secrets"
    paths = [str((COMPOSE_DIR / s["file"]).resolve().relative_to(ROOT)) for s in secrets.values()]
    r = subprocess.run(
        ["git", "check-ignore", "--no-index", *paths], check=False, cwd=ROOT, capture_output=True, text=True
    )
    ignored = set(r.stdout.split())
    assert set(paths) <= ignored, f"secret files git would commit: {sorted(set(paths) - ignored)}"
    assert "secrets" not in (load(BASE).get("secrets") or {}), "the quickstart must need no secret"


# ---- the exporter's commands are real flags --------------------------------------------------


def test_demo_command_is_valid_and_listens_beyond_loopback() -> None:
    """--demo alone listens on 127.0.0.1: unreachable from Prometheus in another container."""
    svc = load(BASE)["services"][EXPORTER]
    settings = parse_args(svc["command"])  # exits 2 on an unknown flag
    assert settings.demo
    host, port = split_address(settings.listen_address)
    assert host in (None, "0.0.0.0", "::"), f"--demo in a container must not listen on {host}"
    published = [str(p).rsplit(":", 1)[-1] for p in svc.get("ports", [])]
    assert str(port) in published, f"the exporter listens on {port}, compose publishes {published}"


def test_config_overlay_command_reads_the_mounted_config() -> None:
    svc = merged()["services"][EXPORTER]
    settings = parse_args(svc["command"])
    assert not settings.demo, "the overlay must replace the --demo command"
    assert split_address(settings.listen_address)[0] is None
    config = Path(settings.config_file)
    mounted = {target: host for host, target in bind_mounts(merged(), EXPORTER)}
    assert str(config.parent) in mounted, f"{config} is not in a mounted directory: {sorted(mounted)}"
    assert (mounted[str(config.parent)] / config.name).is_file()


def test_config_overlay_config_is_valid_with_its_secrets(tmp_path: Path) -> None:
    """The example config.yaml passes --config.check once each secret the service is given
    exists (as files in a temporary directory standing for /run/secrets), and names no
    secret that compose does not mount."""
    project = merged()
    svc = project["services"][EXPORTER]
    granted = {s if isinstance(s, str) else s.get("target", s["source"]) for s in svc["secrets"]}
    assert granted <= set(project["secrets"]), "the service is given secrets the file does not define"
    config_path = next(
        host / "config.yaml" for host, target in bind_mounts(project, EXPORTER) if target.endswith("exporter")
    )
    text = config_path.read_text()
    for name in granted:
        (tmp_path / name).write_text(f"placeholder-{name}\n")
    assert SECRETS_MOUNT in text, "config.yaml reads no credential from /run/secrets"
    local = tmp_path / "config.yaml"
    local.write_text(text.replace(SECRETS_MOUNT, f"{tmp_path}/"))
    r = config_check(local)
    assert r.returncode == 0, f"config.yaml with the secrets of compose.config.yaml:\n{r.stdout}{r.stderr}"


# ---- Prometheus, Alertmanager, Grafana -------------------------------------------------------


@pytest.mark.parametrize("compose_file", [BASE, HA], ids=lambda p: p.name)
def test_prometheus_config_passes_promtool_with_the_mounted_rules(compose_file: Path, tmp_path: Path) -> None:
    promtool = need("promtool", "Debian package prometheus")
    project = load(compose_file)
    root = container_layout(project, "prometheus", tmp_path / "root")
    flags = [a for a in project["services"]["prometheus"]["command"] if a.startswith("--config.file=")]
    config = root / flags[0].split("=", 1)[1].lstrip("/")
    r = subprocess.run(
        [promtool, "check", "config", str(config)], check=False, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stdout + r.stderr
    # promtool resolves rule_files relative to the config; with none, it would pass unchecked
    assert "livestream.alerts.yml" in r.stdout + r.stderr, r.stdout + r.stderr


def test_prometheus_scrapes_the_exporter_and_alerts_to_alertmanager() -> None:
    project = load(BASE)
    config_host = next(
        host for host, target in bind_mounts(project, "prometheus") if target.endswith("prometheus.yml")
    )
    prom = load(config_host)
    exporter_port = split_address(parse_args(project["services"][EXPORTER]["command"]).listen_address)[1]
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    exporter_jobs = [n for n in jobs if "livestream" in n]  # what livestream.rules.yml matches
    assert exporter_jobs, "no scrape job whose name contains 'livestream'"
    targets = [t for n in exporter_jobs for sc in jobs[n]["static_configs"] for t in sc["targets"]]
    assert f"{EXPORTER}:{exporter_port}" in targets, targets
    am = [t for a in prom["alerting"]["alertmanagers"] for sc in a["static_configs"] for t in sc["targets"]]
    assert am and all(t.split(":")[0] in project["services"] for t in am), am
    assert all(host_port(t) == 9093 for t in am), am


def test_alertmanager_config_passes_amtool(tmp_path: Path) -> None:
    amtool = need("amtool", "Debian package prometheus-alertmanager")
    project = load(BASE)
    root = container_layout(project, "alertmanager", tmp_path / "root")
    flags = [a for a in project["services"]["alertmanager"]["command"] if a.startswith("--config.file=")]
    config = root / flags[0].split("=", 1)[1].lstrip("/")
    r = subprocess.run(
        [amtool, "check-config", str(config)], check=False, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_grafana_provisions_the_three_dashboards_and_the_stack_prometheus(tmp_path: Path) -> None:
    project = load(BASE)
    root = container_layout(project, "grafana", tmp_path / "root")
    provisioning = root / "etc" / "grafana" / "provisioning"
    providers = [p for f in (provisioning / "dashboards").glob("*.yml") for p in load(f)["providers"]]
    assert providers, "no dashboard provider mounted under /etc/grafana/provisioning/dashboards"
    shown = {j.name for p in providers for j in (root / p["options"]["path"].lstrip("/")).glob("*.json")}
    shipped = {p.name for p in (ROOT / "grafana" / "dashboards").glob("*.json")}
    assert len(shipped) == 3 and shown == shipped, f"provisioned {sorted(shown)}, shipped {sorted(shipped)}"

    sources = [d for f in (provisioning / "datasources").glob("*.yml") for d in load(f)["datasources"]]
    prom = [d for d in sources if d["type"] == "prometheus"]
    assert len(prom) == 1 and prom[0]["isDefault"], sources
    service, _, port = prom[0]["url"].removeprefix("http://").partition(":")
    assert service in project["services"] and port == "9090", prom[0]["url"]
    scrape_interval = load(COMPOSE_DIR / "prometheus.yml")["global"]["scrape_interval"]
    assert prom[0]["jsonData"]["timeInterval"] == scrape_interval, (
        "$__rate_interval needs the scrape interval"
    )
    home = project["services"]["grafana"]["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    assert home is None or (root / home.lstrip("/")).is_file(), home


# ---- compose.ha.yaml: three replicas, Redis, the simulator -----------------------------------

REDIS = "redis"
SIMULATOR = "simulator"
REDIS_PORT = 6379
#: what may differ between the replicas' service definitions
PER_REPLICA = ("hostname", "ports")


def ha() -> dict[str, Any]:
    return load(HA)


def replicas(project: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in project["services"].items() if n.startswith(EXPORTER)}


def ha_config_host(project: dict[str, Any]) -> Path:
    """The host file each replica reads as its --config.file."""
    (name, svc), *_ = replicas(project).items()
    config = Path(parse_args(svc["command"]).config_file)
    mounted = {target: host for host, target in bind_mounts(project, name)}
    assert str(config.parent) in mounted, f"{config} is not in a mounted directory: {sorted(mounted)}"
    return mounted[str(config.parent)] / config.name


def simulator_listen(project: dict[str, Any]) -> tuple[str, int]:
    command = project["services"][SIMULATOR]["command"]
    host, _, port = command[command.index("--listen") + 1].rpartition(":")
    return host, int(port)


def test_ha_runs_three_identical_replicas_each_reachable() -> None:
    project = ha()
    reps = replicas(project)
    assert len(reps) == 3, sorted(reps)
    strip = [{k: v for k, v in svc.items() if k not in PER_REPLICA} for svc in reps.values()]
    assert all(s == strip[0] for s in strip), "the replicas differ beyond their host name and port"
    hostnames = [svc.get("hostname") for svc in reps.values()]
    assert None not in hostnames and len(set(hostnames)) == 3, hostnames
    published = []
    for name, svc in reps.items():
        settings = parse_args(svc["command"])  # exits 2 on an unknown flag
        assert not settings.demo, f"{name}: --demo runs its own simulator and cannot be clustered"
        assert split_address(settings.listen_address)[0] is None, f"{name} listens on one address only"
        port = split_address(settings.listen_address)[1]
        (mapping,) = svc["ports"]
        host_side, _, container = str(mapping).rpartition(":")
        assert int(container) == port, f"{name} listens on {port}, compose publishes {mapping}"
        assert host_side.startswith("127.0.0.1:"), f"{name}: publish on loopback only, not {mapping}"
        published.append(host_side)
    assert len(set(published)) == 3, f"two replicas publish one host port: {published}"
    assert ha_config_host(project).is_file()


def test_ha_config_is_valid_and_clustered() -> None:
    r = config_check(ha_config_host(ha()))
    assert r.returncode == 0, r.stdout + r.stderr
    # without a cluster section the check passes too, but each replica would spend the whole budget
    assert "cluster: replicas share every budget through" in r.stdout, r.stdout


def test_ha_config_reaches_the_stack_redis_and_simulator() -> None:
    """cluster.redis_url names the Redis service, every base_url the simulator service, and
    the sources are the simulator's demo sources (its credentials and catalog)."""
    project = ha()
    config = load(ha_config_host(project))
    url = urlsplit(config["cluster"]["redis_url"])
    assert (url.scheme, url.hostname, url.port or REDIS_PORT) == ("redis", REDIS, REDIS_PORT), url
    assert "--port" not in project["services"][REDIS]["command"], f"Redis listens on {REDIS_PORT}"

    sim = project["services"][SIMULATOR]
    assert sim["entrypoint"][-2:] == ["-m", "exporter.simulator"], sim["entrypoint"]
    host, port = simulator_listen(project)
    assert host in ("0.0.0.0", "::", ""), f"the simulator must listen beyond loopback, not {host}"
    # the image's HEALTHCHECK asks HEALTHCHECK_URL, the exporter's port by default
    assert urlsplit(sim["environment"]["HEALTHCHECK_URL"]).port == port, sim["environment"]
    assert config["sources"] == demo_config(f"http://{SIMULATOR}:{port}")["sources"]


def test_ha_redis_is_private_pinned_and_keeps_nothing() -> None:
    project = ha()
    redis = project["services"][REDIS]
    image, _, tag = redis["image"].rpartition(":")
    assert image == "redis" and tag[:1].isdigit(), f"pin the official image: {redis['image']}"
    assert "ports" not in redis, "Redis has no password: it must not be published"
    for network in redis["networks"]:
        assert project["networks"][network].get("internal") is True, f"{network} is not internal"
        members = {n for n, s in project["services"].items() if network in s.get("networks", ["default"])}
        assert members == {REDIS, *replicas(project)}, f"{network} is shared with {sorted(members)}"
    for name in replicas(project):
        assert set(redis["networks"]) & set(project["services"][name]["networks"]), (
            f"{name} cannot reach Redis"
        )
    command = redis["command"]
    assert command[command.index("--save") + 1] == "" and command[command.index("--appendonly") + 1] == "no"
    assert redis["read_only"] is True and redis["cap_drop"] == ["ALL"], "harden it like the exporter"
    assert redis.get("user") not in (None, "root", "0"), "the image starts as root unless told"
    assert "/data" in redis["tmpfs"], "the read-only Redis needs a writable working directory"


def test_ha_prometheus_scrapes_every_replica() -> None:
    project = ha()
    config_host = next(
        host for host, target in bind_mounts(project, "prometheus") if target.endswith("prometheus.yml")
    )
    assert config_host != COMPOSE_DIR / "prometheus.yml", (
        "the quickstart's prometheus.yml scrapes one exporter"
    )
    prom = load(config_host)
    jobs = [j for j in prom["scrape_configs"] if "livestream" in j["job_name"]]
    assert len(jobs) == 1, "one scrape job for the three replicas"
    targets = {t for sc in jobs[0]["static_configs"] for t in sc["targets"]}
    expected = {
        f"{name}:{split_address(parse_args(svc['command']).listen_address)[1]}"
        for name, svc in replicas(project).items()
    }
    assert targets == expected
    assert prom["global"] == load(COMPOSE_DIR / "prometheus.yml")["global"], "Grafana's timeInterval"
    am = [t for a in prom["alerting"]["alertmanagers"] for sc in a["static_configs"] for t in sc["targets"]]
    assert am and all(t.split(":")[0] in project["services"] for t in am), am


def test_ha_reuses_the_quickstart_monitoring_services() -> None:
    """Alertmanager and Grafana are compose.yaml's (amtool and the dashboard test check them
    there); Prometheus differs only in its scrape configuration and what it waits for."""
    quick, project = load(BASE)["services"], ha()["services"]
    for name in ("alertmanager", "grafana"):
        assert project[name] == quick[name], f"{name} differs from compose.yaml's"

    def prometheus(svc: dict[str, Any]) -> dict[str, Any]:
        volumes = [v for v in svc["volumes"] if not split_volume(v)[1].endswith("prometheus.yml")]
        return {**{k: v for k, v in svc.items() if k != "depends_on"}, "volumes": volumes}

    assert prometheus(project["prometheus"]) == prometheus(quick["prometheus"])
    assert set(project["prometheus"]["depends_on"]) == {*replicas(ha()), "alertmanager"}
