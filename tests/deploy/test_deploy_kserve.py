"""deploy/kserve: the InferenceService that runs the server under KServe, rendered by `kubectl kustomize`.

KServe's CRD schema is not available offline, so the predictor is checked in two parts: its KServe fields
against the v1beta1 API's list, and everything else as the core/v1 PodSpec it is (kubernetes-validate, strict).
"""

from __future__ import annotations

import kubernetes_validate
import pytest
from deploy_helpers import DEPLOY, kustomize_build

from adapterserve.main import create_app
from adapterserve.settings import Settings

KSERVE = DEPLOY / "kserve"
VARIANTS = ("cpu", "gpu")
# serving.kserve.io/v1beta1 PredictorSpec = PodSpec + ComponentExtensionSpec (+ one framework key, unused here).
EXTENSION_FIELDS = {
    "minReplicas",
    "maxReplicas",
    "scaleTarget",
    "scaleMetric",
    "scaleMetricType",
    "autoScaling",
    "containerConcurrency",
    "timeout",
    "canaryTrafficPercent",
    "logger",
    "batcher",
    "labels",
    "annotations",
    "deploymentStrategy",
}


@pytest.fixture(scope="module", params=VARIANTS)
def rendered(request):
    return request.param, kustomize_build(KSERVE / request.param)


def _isvc(objs):
    (isvc,) = [o for o in objs if o["kind"] == "InferenceService"]
    return isvc


def test_inference_service_shape(rendered):
    _, objs = rendered
    isvc = _isvc(objs)
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["metadata"]["namespace"] == "adapterserve"
    predictor = isvc["spec"]["predictor"]
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"  # the name KServe requires for a custom predictor
    assert container["ports"] == [{"name": "http1", "containerPort": 8080, "protocol": "TCP"}]
    assert container["args"][-2:] == ["--port", "8080"]
    assert predictor["minReplicas"] >= 1 and predictor["maxReplicas"] > predictor["minReplicas"]
    sa = [o for o in objs if o["kind"] == "ServiceAccount"]
    assert [s["metadata"]["name"] for s in sa] == [predictor["serviceAccountName"]]


def test_predictor_is_a_valid_pod_spec(rendered):
    _, objs = rendered
    predictor = _isvc(objs)["spec"]["predictor"]
    unknown = {k for k in predictor if k not in EXTENSION_FIELDS} - set(_pod_spec_fields())
    assert not unknown, f"neither KServe nor PodSpec fields: {unknown}"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "predictor"},
        "spec": {k: v for k, v in predictor.items() if k not in EXTENSION_FIELDS},
    }
    kubernetes_validate.validate(pod, "1.30", strict=True)


def _pod_spec_fields():
    import json
    from pathlib import Path

    schema_dir = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / "v1.30.0-local-strict"
    return json.loads((schema_dir / "podspec-v1.json").read_text())["properties"]


def test_probes_and_settings_are_real(rendered):
    _, objs = rendered
    (container,) = _isvc(objs)["spec"]["predictor"]["containers"]
    paths = set(create_app(Settings(warmup=False)).openapi()["paths"])
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in paths
        assert container[probe]["httpGet"]["port"] == 8080
    env = {e["name"]: e for e in container["env"]}
    fields = {f"ADAPTERSERVE_{name.upper()}" for name in Settings.model_fields}
    assert {n for n in env if n.startswith("ADAPTERSERVE_")} <= fields
    assert env["ADAPTERSERVE_STORE"]["value"].startswith("s3://")
    assert "value" not in env["ADAPTERSERVE_ADMIN_TOKEN"]  # a Secret reference, never a literal
    for name in ("ADAPTERSERVE_DEVICE", "ADAPTERSERVE_STORE"):
        Settings(**{name.removeprefix("ADAPTERSERVE_").lower(): env[name]["value"], "warmup": False})


def test_gpu_variant_asks_for_a_gpu_and_cuda(rendered):
    variant, objs = rendered
    predictor = _isvc(objs)["spec"]["predictor"]
    (container,) = predictor["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    if variant == "gpu":
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert env["ADAPTERSERVE_DEVICE"] == "cuda" and env["ADAPTERSERVE_DTYPE"] == "float16"
        assert any(t["key"] == "nvidia.com/gpu" for t in predictor["tolerations"])
    else:
        assert "nvidia.com/gpu" not in container["resources"]["limits"]
        assert env["ADAPTERSERVE_DEVICE"] == "cpu"
