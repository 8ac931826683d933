"""deploy/kubernetes: the kustomize base and its overlays, checked by the ecosystem's validators.

overlays/example runs the one replica of the base; overlays/ha runs three replicas sharing
the vendor budgets through a Redis of its own (the cluster mode).

kubectl kustomize renders all three (offline: nothing remote is referenced); the core kinds pass
kubernetes-validate --strict; the prometheus-operator kinds, which it has no schema for, pass the
models of @kubernetes-models/prometheus-operator; the PrometheusRule's groups pass promtool. The
generated manifests must equal what `python -m deploytools.kubernetes` writes now.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from deploytools import kubernetes as gen
from exporter.web.webconfig import load_web_config
from tests.tooling import ROOT, VENV_BIN, need, need_node_module

KUBE = ROOT / "deploy" / "kubernetes"
BASE = KUBE / "base"
OVERLAY = KUBE / "overlays" / "example"
HA = KUBE / "overlays" / "ha"
TREES = {"base": BASE, "overlay": OVERLAY, "ha": HA}
#: the trees running the base's single replica
SINGLE = ("base", "overlay")
#: the overlays (and the directory of each)
OVERLAYS = {"overlay": OVERLAY, "ha": HA}
POD_LABELS = {"app.kubernetes.io/name": "livestream-exporter", "app.kubernetes.io/component": "exporter"}
UID = 65532
EXPORTER = "livestream-exporter"
REDIS = "livestream-exporter-redis"
REDIS_PORT = 6379

# Constructs the prometheus-operator model of every document on stdin (a JSON list) and calls
# .validate(); prints one line per document, exits 1 if any is invalid or of an unknown kind.
MODELS_SCRIPT = r"""
const dir = process.env.MODELS_URL;
const models = await import(dir + "/monitoring.coreos.com/v1/index.js");
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
let failed = false;
for (const doc of JSON.parse(Buffer.concat(chunks).toString())) {
  const what = `${doc.kind}/${doc.metadata && doc.metadata.name}`;
  const Model = doc.apiVersion === "monitoring.coreos.com/v1" ? models[doc.kind] : undefined;
  if (typeof Model !== "function") { console.log(`FAIL ${what}: no model`); failed = true; continue; }
  try { new Model(doc).validate(); console.log(`ok ${what}`); }
  catch (e) { console.log(`FAIL ${what}: ${e.message}`); failed = true; }
}
process.exit(failed ? 1 : 0);
"""


def kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = need("kubectl", "Debian package kubernetes-client, or the kubectl release binary")
    done = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: kustomize(path) for name, path in TREES.items()}


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}s"
    return found[0]


def named(docs: list[dict[str, Any]], kind: str, name: str = EXPORTER) -> dict[str, Any]:
    """The `kind` called `name` (the HA overlay has a Deployment, Service ... of Redis too)."""
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind}s named {name}"
    return found[0]


def exporter_config(docs: list[dict[str, Any]]) -> str:
    """config.yaml as the exporter's pod reads it (the generated Secret)."""
    (config,) = [
        d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].startswith(f"{EXPORTER}-config-")
    ]
    return base64.b64decode(config["data"]["config.yaml"]).decode()


def redis_selector(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The labels that select Redis' pods (its Deployment's selector)."""
    return dict(named(docs, "Deployment", REDIS)["spec"]["selector"]["matchLabels"])


def is_crd_kind(doc: dict[str, Any]) -> bool:
    return str(doc["apiVersion"]).startswith("monitoring.coreos.com/")


def run_models(docs: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    node = need("node", "Debian package nodejs")
    module = need_node_module("@kubernetes-models/prometheus-operator")
    return subprocess.run(
        [node, "--input-type=module", "-e", MODELS_SCRIPT],
        input=json.dumps(docs),
        env={**os.environ, "MODELS_URL": module.as_uri()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def kubernetes_validate(docs: list[dict[str, Any]], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    tool = need("kubernetes-validate", "PyPI kubernetes-validate, in .[dev]")
    manifest = tmp_path / "core.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    return subprocess.run(
        [tool, "--strict", str(manifest)], capture_output=True, text=True, timeout=120, check=False
    )


# ------------------------------------------------------------------ generated manifests


def test_generated_manifests_are_current() -> None:
    assert gen.stale() == [], "run: python -m deploytools.kubernetes"
    done = subprocess.run(
        [sys.executable, "-m", "deploytools.kubernetes", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _copy_sources(tmp_path: Path) -> Path:
    for rel in ("deploy/prometheus", "grafana/dashboards", "deploy/kubernetes/base/generated"):
        shutil.copytree(ROOT / rel, tmp_path / rel, ignore=shutil.ignore_patterns("tests"))
    return tmp_path


def test_check_reports_an_edited_rule_file_and_a_stray_file(tmp_path: Path) -> None:
    root = _copy_sources(tmp_path)
    gen.write(root)  # from the sources as they are now, committed copies current or not
    assert gen.stale(root) == []
    rules = root / "deploy/prometheus/livestream.rules.yml"
    rules.write_text(rules.read_text().replace("vector(0.5)", "vector(0.6)", 1))
    (root / gen.GENERATED / "old.yaml").write_text("{}\n")
    problems = gen.stale(root)
    assert any("prometheusrule.yaml: differs" in p for p in problems), problems
    assert any("old.yaml: not generated" in p for p in problems), problems
    gen.write(root)
    assert gen.stale(root) == []
    assert "vector(0.6)" in (root / gen.GENERATED / "prometheusrule.yaml").read_text()


def test_duplicate_group_names_are_refused(tmp_path: Path) -> None:
    root = _copy_sources(tmp_path)
    shutil.copy(root / "deploy/prometheus/livestream.rules.yml", root / "deploy/prometheus/copy.yml")
    with pytest.raises(gen.GenerateError, match="livestream-tuning"):
        gen.render(root)


def test_prometheusrule_groups_are_the_rule_files(rendered: dict[str, list[dict[str, Any]]]) -> None:
    groups = []
    for path in sorted((ROOT / "deploy" / "prometheus").glob("*.yml")):
        groups += yaml.safe_load(path.read_text())["groups"]
    assert groups
    for docs in rendered.values():
        assert one(docs, "PrometheusRule")["spec"]["groups"] == groups


def test_dashboard_configmaps_carry_the_json_and_the_sidecar_label(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    files = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
    assert len(files) == 3
    for docs in rendered.values():
        maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
        for path in files:
            cm = maps[f"grafana-dashboard-{path.stem}"]
            assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
            assert cm["data"] == {path.name: path.read_text()}  # byte for byte


# ------------------------------------------------------------------ validators


@pytest.mark.parametrize("tree", TREES)
def test_core_kinds_pass_kubernetes_validate_strict(
    tree: str, rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    core = [d for d in rendered[tree] if not is_crd_kind(d)]
    kinds = {d["kind"] for d in core}
    assert {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "Secret", "ConfigMap"} <= kinds
    done = kubernetes_validate(core, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Couldn't find schema" not in done.stdout + done.stderr


def test_kubernetes_validate_strict_rejects_an_unknown_field(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    deployment = json.loads(json.dumps(named(rendered["base"], "Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFS"] = True
    done = kubernetes_validate([deployment], tmp_path)
    assert done.returncode != 0, done.stdout
    assert "readOnlyRootFS" in done.stdout + done.stderr


@pytest.mark.parametrize("tree", TREES)
def test_monitoring_kinds_pass_the_prometheus_operator_models(
    tree: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    crds = [d for d in rendered[tree] if is_crd_kind(d)]
    assert sorted(d["kind"] for d in crds) == ["PrometheusRule", "ServiceMonitor"]
    done = run_models(crds)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split().count("ok") == 2, done.stdout


@pytest.mark.parametrize(
    ("kind", "breakage", "message"),
    [
        ("ServiceMonitor", lambda d: d["spec"]["endpoints"][0].update(port=9733), "port must be string"),
        ("ServiceMonitor", lambda d: d["spec"]["endpoints"][0].update(interval="30 s"), "interval"),
        ("PrometheusRule", lambda d: d["spec"]["groups"][0].update(interval="1 minute"), "interval"),
        ("PrometheusRule", lambda d: d["spec"]["groups"][0]["rules"][0].update(expr=None), "expr"),
    ],
)
def test_prometheus_operator_models_reject_broken_objects(
    kind: str, breakage: Any, message: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    doc = json.loads(json.dumps(one(rendered["base"], kind)))
    breakage(doc)
    done = run_models([doc])
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL" in done.stdout and message in done.stdout, done.stdout


@pytest.mark.parametrize("tree", TREES)
def test_prometheusrule_groups_pass_promtool(
    tree: str, rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    promtool = need("promtool", "Debian package prometheus")
    groups = one(rendered[tree], "PrometheusRule")["spec"]["groups"]
    good = tmp_path / "rules.yml"
    good.write_text(yaml.safe_dump({"groups": groups}))
    done = subprocess.run(
        [promtool, "check", "rules", str(good)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # ... and promtool does look at them: a broken expression is refused
    groups[0]["rules"][0]["expr"] = "vector(("
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({"groups": groups}))
    done = subprocess.run(
        [promtool, "check", "rules", str(bad)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0


# ------------------------------------------------------------------ what the manifests say


@pytest.mark.parametrize("tree", TREES)
def test_deployment_is_hardened(tree: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    pod = named(rendered[tree], "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    for ctx in (pod["securityContext"], container["securityContext"]):
        assert ctx["runAsNonRoot"] is True
        assert ctx["runAsUser"] == UID
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert "add" not in sc["capabilities"]
    assert pod["automountServiceAccountToken"] is False
    assert not pod.get("hostNetwork") and not pod.get("hostPID")
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    # only /tmp is writable
    assert all(m.get("readOnly") for path, m in mounts.items() if path != "/tmp")
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}


@pytest.mark.parametrize("tree", SINGLE)
def test_deployment_runs_one_pod_and_recreates_it(
    tree: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    deployment = named(rendered[tree], "Deployment")
    assert deployment["spec"]["replicas"] == 1
    # never two pollers spending one vendor budget, not even during a rollout
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    config = yaml.safe_load(exporter_config(rendered[tree]))
    assert "cluster" not in config, "a cluster needs Redis: the ha overlay"


@pytest.mark.parametrize("tree", TREES)
def test_deployment_has_probes_and_the_config_secrets(
    tree: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    docs = rendered[tree]
    deployment = named(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert ports[container[probe]["httpGet"]["port"]] == 9733
    assert "--config.file=/etc/livestream-exporter/config.yaml" in container["args"]
    assert "--web.config.file=/etc/livestream-exporter/web-config.yml" in container["args"]
    (config_mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/etc/livestream-exporter"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == config_mount["name"]]
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    files = {}
    for source in volume["projected"]["sources"]:
        name = source["secret"]["name"]
        # the generator's hash suffix: the reference follows the content
        assert name in secrets and name.rsplit("-", 1)[0] in (
            "livestream-exporter-config",
            "livestream-exporter-web-config",
        )
        for item in source["secret"]["items"]:
            assert item["key"] in secrets[name]["data"]
            files[item["path"]] = name
    assert set(files) == {"config.yaml", "web-config.yml"}
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]


@pytest.mark.parametrize("tree", OVERLAYS)
def test_overlay_overrides_image_namespace_and_config(
    tree: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    def image(tree: str) -> str:
        return str(named(rendered[tree], "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"])

    assert image("base").split(":")[0] == "livestream-exporter"
    overlay = yaml.safe_load((OVERLAYS[tree] / "kustomization.yaml").read_text())
    (override,) = overlay["images"]
    assert image(tree) == f"{override['newName']}:{override['newTag']}"
    for doc in rendered[tree]:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == overlay["namespace"], doc["kind"]
    assert exporter_config(rendered[tree]) == (OVERLAYS[tree] / "config.yaml").read_text()
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert "release" in one(rendered[tree], kind)["metadata"]["labels"]


def test_a_config_change_rolls_the_deployment(
    tmp_path: Path, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    tree = tmp_path / "kubernetes"
    shutil.copytree(KUBE, tree)
    config = tree / "overlays" / "example" / "config.yaml"
    config.write_text(config.read_text().replace("interval: 30s", "interval: 1m"))
    before = named(rendered["overlay"], "Deployment")["spec"]["template"]
    after = named(kustomize(tree / "overlays" / "example"), "Deployment")["spec"]["template"]
    assert before != after, "a new config.yaml must change the pod template (and so roll the pod)"


@pytest.mark.parametrize("tree", TREES)
def test_service_monitor_policy_and_budget_select_the_pod(
    tree: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    docs = rendered[tree]
    pod_labels = named(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert POD_LABELS.items() <= pod_labels.items()
    service = named(docs, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == 9733 and port["name"] in ("http-metrics", "metrics")
    monitor = one(docs, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [port["name"]]
    # the rules' up{job=~".*livestream.*"} matches the job the operator names after the Service
    assert "livestream" in service["metadata"]["name"]
    budget = named(docs, "PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["spec"].get("minAvailable") is None  # with one replica it would block every drain
    policy = named(docs, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == [9733]
    egress_ports = {(p["port"], p["protocol"]) for rule in policy["spec"]["egress"] for p in rule["ports"]}
    # the HA overlay adds Redis (test_ha_network_policies_let_only_the_exporter_reach_redis)
    redis = {(REDIS_PORT, "TCP")} if tree == "ha" else set()
    assert egress_ports == {(53, "UDP"), (53, "TCP"), (443, "TCP")} | redis
    for rule in policy["spec"]["egress"]:
        for peer in rule.get("to", []):
            if "ipBlock" not in peer:  # in the cluster: Redis' pods only
                assert tree == "ha" and peer == {"podSelector": {"matchLabels": redis_selector(docs)}}, peer
                continue
            assert "169.254.0.0/16" in peer["ipBlock"]["except"] or peer["ipBlock"]["cidr"] == "::/0"


@pytest.mark.parametrize("tree", OVERLAYS)
def test_overlay_lets_only_the_monitoring_namespace_in(
    tree: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    (rule,) = named(rendered[tree], "NetworkPolicy")["spec"]["ingress"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]


@pytest.mark.parametrize("tree", TREES)
def test_shipped_configs_are_valid(tree: str, tmp_path: Path) -> None:
    exporter = VENV_BIN / "livestream-exporter"
    if not exporter.exists():
        pytest.skip("the exporter is not installed in .venv")
    env = {
        **os.environ,
        **{k: "x" for k in ("CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_APP_ID", "CLOUDFLARE_API_TOKEN")},
        "FERMION_API_KEY": "x",
    }
    config = TREES[tree] / "config.yaml"
    password_file = (yaml.safe_load(config.read_text()).get("cluster") or {}).get("redis_password_file")
    if password_file:  # a file of the pod (the mounted Secret): stand in for it
        (tmp_path / "password").write_text("placeholder\n")
        config = tmp_path / "config.yaml"
        config.write_text(
            (TREES[tree] / "config.yaml").read_text().replace(password_file, str(tmp_path / "password"))
        )
    done = subprocess.run(
        [str(exporter), "--config.file", str(config), "--config.check"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    load_web_config(str(BASE / "web-config.yml"))  # raises on a bad web config


# ------------------------------------------------------------------ the HA overlay


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def pod_template_labels(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    return dict(named(docs, "Deployment", name)["spec"]["template"]["metadata"]["labels"])


def disruptions_allowed(budget: dict[str, Any], replicas: int) -> int:
    """How many healthy pods of `replicas` the budget lets a drain evict at once."""
    spec = budget["spec"]
    if "maxUnavailable" in spec:
        return int(spec["maxUnavailable"])
    return replicas - int(spec["minAvailable"])


def test_ha_runs_three_replicas_rolling_one_at_a_time(rendered: dict[str, list[dict[str, Any]]]) -> None:
    spec = named(rendered["ha"], "Deployment")["spec"]
    assert spec["replicas"] == 3
    # the replicas share the budget: a surge pod joins the cluster instead of doubling the polls
    assert spec["strategy"]["type"] == "RollingUpdate", spec["strategy"]
    rolling = spec["strategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] == 1 and rolling["maxSurge"] in (0, 1), rolling


def test_ha_spreads_the_replicas_over_nodes(rendered: dict[str, list[dict[str, Any]]]) -> None:
    pod = named(rendered["ha"], "Deployment")["spec"]["template"]["spec"]
    labels = pod_template_labels(rendered["ha"], EXPORTER)
    constraints = {c["topologyKey"]: c for c in pod.get("topologySpreadConstraints", [])}
    hostname = constraints.get("kubernetes.io/hostname")
    assert hostname, f"no spread over nodes: {sorted(constraints)}"
    assert hostname["maxSkew"] == 1 and hostname["whenUnsatisfiable"] == "DoNotSchedule", hostname
    assert selects(hostname["labelSelector"]["matchLabels"], labels), "the constraint counts other pods"
    # a cordoned node must not count as an empty domain, or a drain finds no node keeping the skew
    assert hostname.get("nodeTaintsPolicy") == "Honor", hostname
    # spread each ReplicaSet by itself: old pods would skew where a rollout puts the new ones
    assert "pod-template-hash" in hostname.get("matchLabelKeys", []), hostname
    # required anti-affinity would leave a surge pod Pending on three nodes, and all on one
    anti = (pod.get("affinity") or {}).get("podAntiAffinity") or {}
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in anti, anti


def test_ha_budgets_keep_two_replicas_and_let_redis_drain(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["ha"]
    exporter_labels, redis_labels = pod_template_labels(docs, EXPORTER), pod_template_labels(docs, REDIS)
    exporter, redis = named(docs, "PodDisruptionBudget"), named(docs, "PodDisruptionBudget", REDIS)
    assert selects(exporter["spec"]["selector"]["matchLabels"], exporter_labels)
    assert not selects(exporter["spec"]["selector"]["matchLabels"], redis_labels)
    assert disruptions_allowed(exporter, named(docs, "Deployment")["spec"]["replicas"]) == 1, exporter["spec"]
    assert selects(redis["spec"]["selector"]["matchLabels"], redis_labels)
    assert not selects(redis["spec"]["selector"]["matchLabels"], exporter_labels)
    # one Redis pod: a budget of 0 disruptions would block every drain for good
    assert disruptions_allowed(redis, named(docs, "Deployment", REDIS)["spec"]["replicas"]) >= 1, redis[
        "spec"
    ]
    assert len([d for d in docs if d["kind"] == "PodDisruptionBudget"]) == 2


def test_ha_redis_is_hardened(rendered: dict[str, list[dict[str, Any]]]) -> None:
    deployment = named(rendered["ha"], "Deployment", REDIS)
    # two Redis side by side (a surge pod) would split the replicas into two clusters
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    name, _, tag = container["image"].rpartition(":")
    assert name == "redis" and tag[:1].isdigit(), f"pin the official image: {container['image']}"
    for ctx in (pod["securityContext"], container["securityContext"]):
        assert ctx["runAsNonRoot"] is True
        assert ctx["runAsUser"] > 0
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False and sc.get("privileged") is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False
    assert not pod.get("hostNetwork") and not pod.get("hostPID")
    volumes = {v["name"]: v for v in pod["volumes"]}
    (mount,) = container["volumeMounts"]  # the only writable path
    assert mount["mountPath"] == "/data" and "emptyDir" in volumes[mount["name"]], mount
    args = container["args"]
    assert args[args.index("--save") + 1] == "" and args[args.index("--appendonly") + 1] == "no"
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}
    assert any(p["containerPort"] == REDIS_PORT for p in container["ports"])


def test_ha_exporter_and_redis_share_one_password_secret(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Redis requires the Secret's password, and config.yaml reads it from where the
    exporter's pod mounts that very Secret key."""
    docs = rendered["ha"]
    (redis,) = named(docs, "Deployment", REDIS)["spec"]["template"]["spec"]["containers"]
    args, env = redis["args"], {e["name"]: e for e in redis["env"]}
    variable = args[args.index("--requirepass") + 1].removeprefix("$(").removesuffix(")")
    ref = env[variable]["valueFrom"]["secretKeyRef"]
    assert not ref.get("optional"), "Redis must not start without its password"

    cluster = yaml.safe_load(exporter_config(docs))["cluster"]
    password_file = Path(cluster["redis_password_file"])
    pod = named(docs, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(password_file.parent)]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == ref["name"], volume
    items = {i["path"]: i["key"] for i in volume["secret"]["items"]}
    assert items.get(password_file.name) == ref["key"], items
    assert mount.get("readOnly") is True


def test_ha_config_names_the_redis_service(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["ha"]
    url = urlsplit(yaml.safe_load(exporter_config(docs))["cluster"]["redis_url"])
    service = named(docs, "Service", REDIS)
    assert url.scheme in ("redis", "rediss") and url.hostname == service["metadata"]["name"], url
    (port,) = service["spec"]["ports"]
    assert (url.port or REDIS_PORT) == port["port"], (url, port)
    assert selects(service["spec"]["selector"], pod_template_labels(docs, REDIS))
    (redis,) = named(docs, "Deployment", REDIS)["spec"]["template"]["spec"]["containers"]
    assert port["targetPort"] in {p["name"] for p in redis["ports"] if p["containerPort"] == REDIS_PORT}
    # the ServiceMonitor scrapes the exporter's Service only, not Redis
    selector = one(docs, "ServiceMonitor")["spec"]["selector"]["matchLabels"]
    assert not selects(selector, service["metadata"]["labels"])


def test_ha_network_policies_let_only_the_exporter_reach_redis(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["ha"]
    redis_labels = pod_template_labels(docs, REDIS)
    exporter_policy = named(docs, "NetworkPolicy")["spec"]
    to_redis = [
        rule
        for rule in exporter_policy["egress"]
        for peer in rule.get("to", [])
        if "podSelector" in peer and selects(peer["podSelector"]["matchLabels"], redis_labels)
    ]
    assert [(p["port"], p["protocol"]) for rule in to_redis for p in rule["ports"]] == [(REDIS_PORT, "TCP")]

    policy = named(docs, "NetworkPolicy", REDIS)["spec"]
    assert selects(policy["podSelector"]["matchLabels"], redis_labels)
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    assert policy["egress"] == [], "Redis calls no one"
    (rule,) = policy["ingress"]
    assert [(p["port"], p["protocol"]) for p in rule["ports"]] == [(REDIS_PORT, "TCP")]
    # only pods of this namespace that are the exporter: no namespaceSelector, no ipBlock
    (peer,) = rule["from"]
    assert list(peer) == ["podSelector"] and list(peer["podSelector"]) == ["matchLabels"], peer
    allowed = peer["podSelector"]["matchLabels"]
    assert selects(allowed, pod_template_labels(docs, EXPORTER)), allowed
    assert POD_LABELS.items() <= allowed.items(), "any pod called livestream-exporter would do"


def test_ha_namespace_enforces_the_restricted_pod_security_standard(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    (namespace,) = [d for d in rendered["ha"] if d["kind"] == "Namespace"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
