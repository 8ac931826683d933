"""deploy/kubernetes: the kustomize base and the example overlay, checked by the ecosystem's validators.

kubectl kustomize renders both (offline: nothing remote is referenced); the core kinds pass
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

import pytest
import yaml

from deploytools import kubernetes as gen
from exporter.web.webconfig import load_web_config
from tests.tooling import ROOT, VENV_BIN, need, need_node_module

KUBE = ROOT / "deploy" / "kubernetes"
BASE = KUBE / "base"
OVERLAY = KUBE / "overlays" / "example"
TREES = {"base": BASE, "overlay": OVERLAY}
POD_LABELS = {"app.kubernetes.io/name": "livestream-exporter", "app.kubernetes.io/component": "exporter"}
UID = 65532

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
    deployment = json.loads(json.dumps(one(rendered["base"], "Deployment")))
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


def test_prometheusrule_groups_pass_promtool(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    promtool = need("promtool", "Debian package prometheus")
    groups = one(rendered["overlay"], "PrometheusRule")["spec"]["groups"]
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
    pod = one(rendered[tree], "Deployment")["spec"]["template"]["spec"]
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


@pytest.mark.parametrize("tree", TREES)
def test_deployment_runs_one_pod_with_probes_and_the_config_secrets(
    tree: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    docs = rendered[tree]
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    # never two pollers spending one vendor budget, not even during a rollout
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
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


def test_overlay_overrides_image_namespace_and_config(rendered: dict[str, list[dict[str, Any]]]) -> None:
    def image(tree: str) -> str:
        return str(one(rendered[tree], "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"])

    assert image("base").split(":")[0] == "livestream-exporter"
    overlay = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    (override,) = overlay["images"]
    assert image("overlay") == f"{override['newName']}:{override['newTag']}"
    for doc in rendered["overlay"]:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == overlay["namespace"], doc["kind"]
    (config,) = [
        d
        for d in rendered["overlay"]
        if d["kind"] == "Secret" and d["metadata"]["name"].startswith("livestream-exporter-config-")
    ]
    assert base64.b64decode(config["data"]["config.yaml"]).decode() == (OVERLAY / "config.yaml").read_text()
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert "release" in one(rendered["overlay"], kind)["metadata"]["labels"]


def test_a_config_change_rolls_the_deployment(
    tmp_path: Path, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    tree = tmp_path / "kubernetes"
    shutil.copytree(KUBE, tree)
    config = tree / "overlays" / "example" / "config.yaml"
    config.write_text(config.read_text().replace("interval: 30s", "interval: 1m"))
    before = one(rendered["overlay"], "Deployment")["spec"]["template"]
    after = one(kustomize(tree / "overlays" / "example"), "Deployment")["spec"]["template"]
    assert before != after, "a new config.yaml must change the pod template (and so roll the pod)"


@pytest.mark.parametrize("tree", TREES)
def test_service_monitor_policy_and_budget_select_the_pod(
    tree: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    docs = rendered[tree]
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert POD_LABELS.items() <= pod_labels.items()
    service = one(docs, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == 9733 and port["name"] in ("http-metrics", "metrics")
    monitor = one(docs, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [port["name"]]
    # the rules' up{job=~".*livestream.*"} matches the job the operator names after the Service
    assert "livestream" in service["metadata"]["name"]
    budget = one(docs, "PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["spec"].get("minAvailable") is None  # one replica: it would block every drain
    policy = one(docs, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == [9733]
    egress_ports = {(p["port"], p["protocol"]) for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert egress_ports == {(53, "UDP"), (53, "TCP"), (443, "TCP")}
    for rule in policy["spec"]["egress"]:
        for peer in rule.get("to", []):
            assert "169.254.0.0/16" in peer["ipBlock"]["except"] or peer["ipBlock"]["cidr"] == "::/0"


def test_overlay_lets_only_the_monitoring_namespace_in(rendered: dict[str, list[dict[str, Any]]]) -> None:
    (rule,) = one(rendered["overlay"], "NetworkPolicy")["spec"]["ingress"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]


@pytest.mark.parametrize("tree", TREES)
def test_shipped_configs_are_valid(tree: str) -> None:
    exporter = VENV_BIN / "livestream-exporter"
    if not exporter.exists():
        pytest.skip("the exporter is not installed in .venv")
    env = {
        **os.environ,
        **{k: "x" for k in ("CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_APP_ID", "CLOUDFLARE_API_TOKEN")},
        "FERMION_API_KEY": "x",
    }
    done = subprocess.run(
        [str(exporter), "--config.file", str(TREES[tree] / "config.yaml"), "--config.check"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    load_web_config(str(BASE / "web-config.yml"))  # raises on a bad web config
