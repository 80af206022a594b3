"""Kubernetes manifests (deploy/): render the overlays offline, validate them
against the Kubernetes OpenAPI schemas (kubernetes-validate ships them), check
the CRD objects' structure, and assert the operational semantics."""

from __future__ import annotations

import re
import shutil
import subprocess

import jsonschema
import kubernetes_validate
import promql_parser
import pytest
import yaml
from deploy_helpers import DEPLOY, DOCKER, GAUGES, OVERLAYS, find, kustomize_build

K8S_VERSIONS = ["1.30", kubernetes_validate.latest_version()]
EXPECTED_KINDS = {
    "ServiceAccount",
    "ConfigMap",
    "Service",
    "Deployment",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "ServiceMonitor",
}
CRD_KINDS = {"ServiceMonitor"}
NAMESPACE = "adapterserve"


def deployment(objs):
    return find(objs, "Deployment", "adapterserve")


def container(objs):
    containers = deployment(objs)["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "adapterserve")


def config(objs):
    return find(objs, "ConfigMap", "adapterserve-config")["data"]


def matches(selector: dict, labels: dict) -> bool:
    """matchLabels / matchExpressions (In, NotIn, Exists, DoesNotExist) against labels."""
    assert set(selector) <= {"matchLabels", "matchExpressions"}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        op, key, values = expr["operator"], expr["key"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return bool(selector.get("matchLabels") or selector.get("matchExpressions"))


_SUFFIXES = {
    "m": 1e-3,
    "": 1,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(value) -> float:
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value))
    assert match and match[2] in _SUFFIXES, f"bad quantity {value!r}"
    return float(match[1]) * _SUFFIXES[match[2]]


# --------------------------------------------------------------------------
# rendering and schemas


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_expected_objects(rendered, overlay):
    objs = rendered[overlay]
    assert {o["kind"] for o in objs} == EXPECTED_KINDS
    assert len(objs) == len(EXPECTED_KINDS)
    for obj in objs:
        assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "adapterserve"
        assert labels["app.kubernetes.io/part-of"] == "adapterserve"
        assert labels["app.kubernetes.io/variant"] == overlay
    # no secret values are rendered or shipped
    assert not [o for o in objs if o["kind"] == "Secret"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_builtin_objects_match_kubernetes_schema(rendered, overlay, version):
    checked = 0
    for obj in rendered[overlay]:
        if obj["kind"] in CRD_KINDS:
            continue
        # strict: unknown fields are errors (catches typos such as `livenesProbe`)
        kubernetes_validate.validate(obj, version, strict=True)
        checked += 1
    assert checked == len(EXPECTED_KINDS - CRD_KINDS)


def test_schema_validation_catches_mistakes(rendered):
    """Guard against a validator that accepts everything."""
    bad = yaml.safe_load(yaml.safe_dump(deployment(rendered["cpu"])))
    bad["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.30", strict=True)
    bad = yaml.safe_load(yaml.safe_dump(deployment(rendered["cpu"])))
    bad["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "45"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.30", strict=True)


# Subset of the prometheus-operator ServiceMonitor CRD (monitoring.coreos.com/v1)
# covering the fields used here; unknown fields are rejected.
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            "additionalProperties": False,
        },
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "matchExpressions": {"type": "array"},
                    },
                },
                "namespaceSelector": {"type": "object"},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "targetPort": {"type": ["string", "integer"]},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                            "interval": {
                                "type": "string",
                                "pattern": r"^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
                            },
                            "scrapeTimeout": {
                                "type": "string",
                                "pattern": r"^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
                            },
                            "honorLabels": {"type": "boolean"},
                            "relabelings": {"type": "array"},
                            "metricRelabelings": {"type": "array"},
                        },
                    },
                },
            },
        },
    },
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_monitor_structure(rendered, overlay):
    objs = rendered[overlay]
    monitor = find(objs, "ServiceMonitor", "adapterserve")
    jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    service = find(objs, "Service", "adapterserve")
    assert matches(monitor["spec"]["selector"], service["metadata"]["labels"])
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"
        # prometheus-operator requires scrapeTimeout <= interval
        assert int(endpoint["scrapeTimeout"].rstrip("s")) <= int(endpoint["interval"].rstrip("s"))


def test_secrets_are_references_only():
    kustomization = yaml.safe_load((DEPLOY / "base" / "kustomization.yaml").read_text())
    assert "secret.example.yaml" not in kustomization["resources"]
    for path in DEPLOY.rglob("*.yaml"):
        if path.name == "secret.example.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            assert not (isinstance(doc, dict) and doc.get("kind") == "Secret"), path


def test_secret_example_matches_references(rendered):
    examples = [d for d in yaml.safe_load_all((DEPLOY / "base" / "secret.example.yaml").read_text()) if d]
    for secret in examples:
        kubernetes_validate.validate(secret, "1.30", strict=True)
        for value in secret["stringData"].values():
            assert "REPLACE" in value, "the example must hold placeholders only"
    provided = {(s["metadata"]["name"], key) for s in examples for key in s["stringData"]}
    refs = {
        (env["valueFrom"]["secretKeyRef"]["name"], env["valueFrom"]["secretKeyRef"]["key"])
        for overlay in OVERLAYS
        for env in container(rendered[overlay]).get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    assert refs == provided
    names = {env["name"] for env in container(rendered["cpu"])["env"] if "secretKeyRef" in env.get("valueFrom", {})}
    assert names == {"ADAPTERSERVE_ADMIN_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


# --------------------------------------------------------------------------
# semantics


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_point_at_health_endpoints(rendered, overlay):
    c = container(rendered[overlay])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8080}
    expected = {"startupProbe": "/health/ready", "readinessProbe": "/health/ready", "livenessProbe": "/health/live"}
    for probe_name, path in expected.items():
        probe = c[probe_name]["httpGet"]
        assert probe["path"] == path, probe_name
        port = ports[probe["port"]] if isinstance(probe["port"], str) else probe["port"]
        assert port == 8080, probe_name
    # the server really listens there
    args = c["args"]
    assert args[0] == "serve"
    assert args[args.index("--port") + 1] == "8080"
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert config(rendered[overlay])["ADAPTERSERVE_PORT"] == "8080"


@pytest.mark.parametrize("overlay,minimum_s", [("cpu", 300), ("gpu", 600)])
def test_startup_probe_is_generous(rendered, overlay, minimum_s):
    c = container(rendered[overlay])
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= minimum_s
    # liveness must not kill a busy pod quickly
    liveness = c["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 30
    assert liveness["timeoutSeconds"] >= 3


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_termination_grace_covers_prestop_and_drain(rendered, overlay):
    objs = rendered[overlay]
    pod = deployment(objs)["spec"]["template"]["spec"]
    command = container(objs)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop_s = float(command[1])
    assert pre_stop_s >= 3, "preStop must give endpoints time to update"
    drain_s = float(config(objs)["ADAPTERSERVE_DRAIN_TIMEOUT_S"])
    assert pod["terminationGracePeriodSeconds"] > drain_s + pre_stop_s
    # margin: after draining, the HTTP server's own graceful close may take a few more seconds
    assert pod["terminationGracePeriodSeconds"] >= drain_s + pre_stop_s + 10
    # zero-downtime rollout
    strategy = deployment(objs)["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_security_context_non_root_read_only(rendered, overlay):
    objs = rendered[overlay]
    pod = deployment(objs)["spec"]["template"]["spec"]
    c = container(objs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] != 0
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert not sc["capabilities"].get("add")
    assert sc.get("privileged") is not True
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    # with a read-only root, /tmp and the Hugging Face cache need writable volumes
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    mounts = {m["mountPath"] for m in c["volumeMounts"] if m["name"] in empty_dirs}
    assert "/tmp" in mounts
    hf_home = _dockerfile_env("Dockerfile.cuda" if overlay == "gpu" else "Dockerfile")["HF_HOME"]
    assert any(hf_home == m or hf_home.startswith(m.rstrip("/") + "/") for m in mounts), hf_home


def _dockerfile_env(name: str) -> dict[str, str]:
    env = {}
    text = (DOCKER / name).read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if line.startswith("ENV "):
            for key, value in re.findall(r"(\w+)=(\S+)", line[4:]):
                env[key] = value
    return env


def test_pod_uid_matches_image_user(rendered):
    for name in ("Dockerfile", "Dockerfile.cuda"):
        users = re.findall(r"^USER\s+(\S+)", (DOCKER / name).read_text(), re.M)
        uid = int(users[-1].split(":")[0])
        for overlay in OVERLAYS:
            assert deployment(rendered[overlay])["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_resources_requests_and_limits(rendered, overlay):
    resources = container(rendered[overlay])["resources"]
    known = {"cpu", "memory", "ephemeral-storage", "nvidia.com/gpu"}
    for section in ("requests", "limits"):
        assert set(resources[section]) <= known, set(resources[section]) - known
    for key in ("cpu", "memory"):
        assert quantity(resources["requests"][key]) <= quantity(resources["limits"][key]), key
    # the memory limit is what the OOM killer enforces: keep requests meaningful
    assert quantity(resources["requests"]["memory"]) >= 2**30


def test_gpu_overlay_requests_a_gpu(rendered):
    objs = rendered["gpu"]
    c = container(objs)
    assert int(c["resources"]["limits"]["nvidia.com/gpu"]) == 1
    # extended resources: requests (if present) must equal limits
    assert int(c["resources"]["requests"].get("nvidia.com/gpu", 1)) == 1
    pod = deployment(objs)["spec"]["template"]["spec"]
    assert pod["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert c["image"].endswith("-cuda")
    data = config(objs)
    assert data["ADAPTERSERVE_DEVICE"] == "cuda"
    assert data["ADAPTERSERVE_DTYPE"] == "float16"
    cpu_data = config(rendered["cpu"])
    for key in ("ADAPTERSERVE_MAX_BATCH_SIZE", "ADAPTERSERVE_MAX_BATCH_TOKENS"):
        assert int(data[key]) > int(cpu_data[key]), key
    # untouched base settings survive the strategic merge
    assert data["ADAPTERSERVE_DRAIN_TIMEOUT_S"] == cpu_data["ADAPTERSERVE_DRAIN_TIMEOUT_S"]
    assert data["ADAPTERSERVE_STORE"] == cpu_data["ADAPTERSERVE_STORE"]


def test_cpu_overlay_has_no_gpu(rendered):
    objs = rendered["cpu"]
    c = container(objs)
    for section in ("requests", "limits"):
        assert "nvidia.com/gpu" not in c["resources"][section]
    assert "nodeSelector" not in deployment(objs)["spec"]["template"]["spec"]
    assert config(objs)["ADAPTERSERVE_DEVICE"] == "cpu"
    assert not c["image"].endswith("-cuda")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_rewritten_and_pinned(rendered, overlay):
    image = container(rendered[overlay])["image"]
    assert image != "adapterserve", "overlay images: entry did not apply"
    name, _, tag = image.rpartition(":")
    assert name and tag and tag != "latest"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_store_is_shared_s3(rendered, overlay):
    data = config(rendered[overlay])
    assert data["ADAPTERSERVE_STORE"].startswith("s3://")
    assert float(data["ADAPTERSERVE_STORE_POLL_S"]) > 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_match_pod_labels(rendered, overlay):
    objs = rendered[overlay]
    dep = deployment(objs)
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert matches(dep["spec"]["selector"], pod_labels)
    service = find(objs, "Service", "adapterserve")
    assert all(pod_labels.get(k) == v for k, v in service["spec"]["selector"].items())
    pdb = find(objs, "PodDisruptionBudget", "adapterserve")
    assert matches(pdb["spec"]["selector"], pod_labels)
    for constraint in dep["spec"]["template"]["spec"].get("topologySpreadConstraints", []):
        assert matches(constraint["labelSelector"], pod_labels)
    # Service ports reach a named container port
    container_ports = {p["name"] for p in container(objs)["ports"]}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in container_ports


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_resolve(rendered, overlay):
    objs = rendered[overlay]
    pod = deployment(objs)["spec"]["template"]["spec"]
    find(objs, "ServiceAccount", pod["serviceAccountName"])
    for source in container(objs)["envFrom"]:
        find(objs, "ConfigMap", source["configMapRef"]["name"])
    mounted = {m["name"] for m in container(objs)["volumeMounts"]}
    assert mounted == {v["name"] for v in pod["volumes"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_hpa_targets_deployment_and_queue_metric(rendered, overlay):
    objs = rendered[overlay]
    hpa = find(objs, "HorizontalPodAutoscaler", "adapterserve")
    dep = deployment(objs)
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == ("apps/v1", "Deployment", dep["metadata"]["name"])
    assert "replicas" not in dep["spec"], "the HPA owns the replica count"
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    assert metrics["Resource"]["resource"]["target"]["type"] == "Utilization"
    pods_metric = metrics["Pods"]["pods"]
    assert pods_metric["metric"]["name"] == "adapterserve_queue_requests"
    assert pods_metric["metric"]["name"] in GAUGES
    assert pods_metric["target"]["type"] == "AverageValue"
    # CPU utilisation is relative to requests: they must be set
    assert container(objs)["resources"]["requests"]["cpu"]
    # the PDB never blocks every eviction at the minimum scale
    pdb = find(objs, "PodDisruptionBudget", "adapterserve")
    if "maxUnavailable" in pdb["spec"]:
        assert pdb["spec"]["maxUnavailable"] >= 1
    else:
        assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]


def test_gpu_hpa_patch_applied(rendered):
    cpu = find(rendered["cpu"], "HorizontalPodAutoscaler", "adapterserve")
    gpu = find(rendered["gpu"], "HorizontalPodAutoscaler", "adapterserve")
    assert gpu["spec"]["maxReplicas"] < cpu["spec"]["maxReplicas"]
    assert (
        gpu["spec"]["metrics"][1]["pods"]["target"]["averageValue"]
        != cpu["spec"]["metrics"][1]["pods"]["target"]["averageValue"]
    )


def test_prometheus_adapter_rule_serves_the_hpa_metric(rendered):
    values = yaml.safe_load((DEPLOY / "prometheus-adapter" / "values.yaml").read_text())
    assert values["rules"]["default"] is False
    hpa = find(rendered["cpu"], "HorizontalPodAutoscaler", "adapterserve")
    wanted = next(m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods")
    rules = values["rules"]["custom"]
    rule = next(r for r in rules if r["name"]["as"] == wanted)
    series = promql_parser.parse(rule["seriesQuery"])
    assert isinstance(series, promql_parser.VectorSelector)
    assert series.name == wanted
    assert re.fullmatch(rule["name"]["matches"], wanted)
    overrides = rule["resources"]["overrides"]
    assert overrides["namespace"]["resource"] == "namespace"
    assert overrides["pod"]["resource"] == "pod"
    # the Go-template placeholders, filled the way prometheus-adapter does
    query = (
        rule["metricsQuery"]
        .replace("<<.Series>>", wanted)
        .replace("<<.LabelMatchers>>", 'namespace="adapterserve",pod=~"a|b"')
        .replace("<<.GroupBy>>", "pod")
    )
    promql_parser.parse(query)


def test_configmap_keys_are_service_settings(rendered):
    """Every ADAPTERSERVE_* key set by deploy/ is a real setting (typos would be silently ignored)."""
    from adapterserve import settings

    fields = {name.upper() for name in settings.Settings.model_fields}
    for overlay in OVERLAYS:
        data = config(rendered[overlay])
        keys = {k.removeprefix("ADAPTERSERVE_") for k in data if k.startswith("ADAPTERSERVE_")}
        assert keys <= fields, keys - fields
        env = {k.removeprefix("ADAPTERSERVE_"): v for k, v in data.items() if k.startswith("ADAPTERSERVE_")}
        # and the values parse
        settings.Settings(**{k.lower(): v for k, v in env.items()})


def test_renderer_matches_real_kustomize_when_available(rendered):
    """Cross-check the Python renderer against a real kustomize, when one is installed."""
    if shutil.which("kustomize"):
        command = ["kustomize", "build"]
    elif shutil.which("kubectl"):
        command = ["kubectl", "kustomize"]
    else:
        pytest.skip("no kustomize or kubectl binary")
    for overlay in OVERLAYS:
        out = subprocess.run(
            command + [str(DEPLOY / "overlays" / overlay)], capture_output=True, text=True, check=True
        ).stdout
        real = [d for d in yaml.safe_load_all(out) if d]
        assert real == rendered[overlay], overlay


def test_renderer_sees_the_whole_tree():
    """Every YAML file under deploy/base and the overlays is used (or is the secret example)."""
    used = set()
    for directory in [DEPLOY / "base"] + [DEPLOY / "overlays" / o for o in OVERLAYS]:
        spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
        used |= {(directory / r).resolve() for r in spec.get("resources", []) if r.endswith(".yaml")}
        used |= {(directory / p["path"]).resolve() for p in spec.get("patches", []) if "path" in p}
        used.add((directory / "kustomization.yaml").resolve())
    for path in list((DEPLOY / "base").glob("*.yaml")) + list((DEPLOY / "overlays").rglob("*.yaml")):
        assert path.resolve() in used or path.name == "secret.example.yaml", f"unused file {path}"
    assert kustomize_build(DEPLOY / "base")
