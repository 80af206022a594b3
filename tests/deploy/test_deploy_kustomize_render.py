"""Tests of the offline Kustomize renderer itself (tests/deploy/kustomize_render.py).

Each success case is also rendered with a real kustomize (`kustomize build` or
`kubectl kustomize`) when one is installed, and the outputs must be equal."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml
from kustomize_render import KustomizeError, build, json6902, strategic_merge

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      initContainers:
        - name: init
          image: busybox:1.36
      containers:
        - name: web
          image: example/web:1.0
          args: ["--a", "--b"]
          env:
            - {name: A, value: "1"}
            - {name: B, value: "2"}
          ports:
            - {name: http, containerPort: 8080}
          resources:
            requests: {cpu: "1", memory: 1Gi}
        - name: sidecar
          image: example/sidecar:2.0
      tolerations:
        - {key: a, operator: Exists}
"""

SERVICE = """
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
    - {name: http, port: 80, targetPort: http}
"""

CLUSTER_ROLE = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: reader
rules: []
"""

CONFIG_MAP = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  A: "1"
  B: "2"
"""

HPA = """
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 3
  metrics:
    - type: Resource
      resource:
        name: cpu
        target: {type: Utilization, averageUtilization: 50}
"""


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


def real_kustomize(directory: Path) -> list[dict] | None:
    if shutil.which("kustomize"):
        command = ["kustomize", "build", str(directory)]
    elif shutil.which("kubectl"):
        command = ["kubectl", "kustomize", str(directory)]
    else:
        return None
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def render(directory: Path) -> list[dict]:
    """Our rendering, cross-checked against a real kustomize when one is installed."""
    ours = build(directory)
    real = real_kustomize(directory)
    if real is not None:
        assert [(o["kind"], o["metadata"]["name"]) for o in ours] == [(o["kind"], o["metadata"]["name"]) for o in real]
        for mine, theirs in zip(ours, real):
            assert yaml.safe_dump(mine) == yaml.safe_dump(theirs)
    return ours


def by_kind(objs: list[dict], kind: str) -> dict:
    return next(o for o in objs if o["kind"] == kind)


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return write_tree(
        tmp_path,
        {
            "base/kustomization.yaml": """
                resources: [deployment.yaml, service.yaml, clusterrole.yaml, configmap.yaml, hpa.yaml]
            """,
            "base/deployment.yaml": DEPLOYMENT,
            "base/service.yaml": SERVICE,
            "base/clusterrole.yaml": CLUSTER_ROLE,
            "base/configmap.yaml": CONFIG_MAP,
            "base/hpa.yaml": HPA,
        },
    )


def test_plain_base_in_legacy_order(base):
    objs = render(base / "base")
    assert [o["kind"] for o in objs] == [
        "ClusterRole",
        "ConfigMap",
        "Service",
        "Deployment",
        "HorizontalPodAutoscaler",
    ]


def test_namespace_labels_images(base):
    write_tree(
        base,
        {
            "overlay/kustomization.yaml": """
                apiVersion: kustomize.config.k8s.io/v1beta1
                kind: Kustomization
                namespace: prod
                resources: [../base]
                labels:
                  - pairs: {team: ml}
                    includeTemplates: true
                images:
                  - {name: example/web, newName: registry.test/web, newTag: "2.0"}
                  - {name: busybox, digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
            """
        },
    )
    objs = render(base / "overlay")
    for obj in objs:
        assert obj["metadata"]["labels"]["team"] == "ml"
        if obj["kind"] == "ClusterRole":
            assert "namespace" not in obj["metadata"]
        else:
            assert obj["metadata"]["namespace"] == "prod"
    dep = by_kind(objs, "Deployment")
    assert dep["spec"]["template"]["metadata"]["labels"] == {"app": "web", "team": "ml"}
    assert dep["spec"]["selector"]["matchLabels"] == {"app": "web"}  # selectors untouched
    assert by_kind(objs, "Service")["spec"]["selector"] == {"app": "web"}
    pod = dep["spec"]["template"]["spec"]
    assert [c["image"] for c in pod["containers"]] == ["registry.test/web:2.0", "example/sidecar:2.0"]
    assert pod["initContainers"][0]["image"].startswith("busybox@sha256:")


def test_strategic_merge_patch(base):
    write_tree(
        base,
        {
            "overlay/kustomization.yaml": """
                resources: [../base]
                patches:
                  - path: deployment-patch.yaml
                  - patch: |-
                      apiVersion: v1
                      kind: ConfigMap
                      metadata:
                        name: settings
                      data:
                        B: null
                        C: "3"
            """,
            "overlay/deployment-patch.yaml": """
                apiVersion: apps/v1
                kind: Deployment
                metadata:
                  name: web
                spec:
                  template:
                    spec:
                      nodeSelector: {gpu: "true"}
                      tolerations:
                        - {key: b, operator: Exists}
                      containers:
                        - name: web
                          args: ["--c"]
                          env:
                            - {name: B, value: "20"}
                            - {name: C, value: "3"}
                          resources:
                            limits: {nvidia.com/gpu: 1}
                        - name: sidecar
                          $patch: delete
            """,
        },
    )
    objs = render(base / "overlay")
    pod = by_kind(objs, "Deployment")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["web"]
    web = pod["containers"][0]
    assert web["args"] == ["--c"]  # lists without a merge key are replaced
    # kustomize puts the patch's list elements first, then the untouched ones
    assert web["env"] == [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}, {"name": "A", "value": "1"}]
    assert web["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"nvidia.com/gpu": 1}}
    assert web["ports"] == [{"name": "http", "containerPort": 8080}]
    assert pod["tolerations"] == [{"key": "b", "operator": "Exists"}]
    assert pod["nodeSelector"] == {"gpu": "true"}
    assert by_kind(objs, "ConfigMap")["data"] == {"A": "1", "C": "3"}


def test_json6902_patch(base):
    write_tree(
        base,
        {
            "overlay/kustomization.yaml": """
                resources: [../base]
                patches:
                  - target: {group: autoscaling, version: v2, kind: HorizontalPodAutoscaler, name: web}
                    patch: |-
                      - op: test
                        path: /spec/metrics/0/resource/name
                        value: cpu
                      - op: replace
                        path: /spec/maxReplicas
                        value: 7
                      - op: add
                        path: /spec/metrics/-
                        value: {type: Pods, pods: {metric: {name: q}, target: {type: AverageValue, averageValue: "5"}}}
                      - op: add
                        path: /metadata/annotations
                        value: {a~b/c: x}
                      - op: copy
                        from: /metadata/name
                        path: /metadata/annotations/copied
                      - op: remove
                        path: /metadata/annotations/a~0b~1c
                  - target: {kind: Service, name: "w.*"}
                    patch: |-
                      - op: move
                        from: /spec/ports/0/targetPort
                        path: /spec/ports/0/appProtocol
            """
        },
    )
    objs = render(base / "overlay")
    hpa = by_kind(objs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["maxReplicas"] == 7
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource", "Pods"]
    assert hpa["metadata"]["annotations"] == {"copied": "web"}
    port = by_kind(objs, "Service")["spec"]["ports"][0]
    assert "targetPort" not in port and port["appProtocol"] == "http"


def test_json6902_failed_test_op_raises():
    obj = {"spec": {"metrics": [{"resource": {"name": "cpu"}}]}}
    with pytest.raises(KustomizeError, match="test failed"):
        json6902(obj, [{"op": "test", "path": "/spec/metrics/0/resource/name", "value": "memory"}])
    with pytest.raises(KustomizeError):
        json6902(obj, [{"op": "replace", "path": "/spec/metrics/3", "value": {}}])
    with pytest.raises(KustomizeError):
        json6902(obj, [{"op": "remove", "path": "/spec/missing"}])


def test_strategic_merge_does_not_mutate_input():
    target = yaml.safe_load(DEPLOYMENT)
    before = yaml.safe_dump(target)
    strategic_merge(target, {"kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 3}})
    assert yaml.safe_dump(target) == before


@pytest.mark.parametrize(
    "kustomization, message",
    [
        ("resources: [../base]\ncommonLabels: {a: b}\n", "unsupported kustomization fields"),
        ("resources: [../base]\nlabels:\n  - pairs: {a: b}\n    includeSelectors: true\n", "includeSelectors"),
        ("resources: [https://github.com/example/repo//deploy]\n", "remote"),
        ("resources: [../base, ../base/service.yaml]\n", "duplicate"),
        (
            "resources: [../base]\npatches:\n  - patch: '[{op: remove, path: /spec}]'\n",
            "needs a target",
        ),
        (
            "resources: [../base]\npatches:\n  - patch: '{apiVersion: v1, kind: ConfigMap, metadata: {name: nope}}'\n",
            "matches nothing",
        ),
        ("resources: [../base]\nconfigMapGenerator: []\n", "unsupported kustomization fields"),
        ("kind: Component\n", "not supported"),
    ],
)
def test_unsupported_or_invalid_input_is_refused(base, kustomization, message):
    write_tree(base, {"overlay/kustomization.yaml": kustomization})
    with pytest.raises(KustomizeError, match=message):
        build(base / "overlay")
