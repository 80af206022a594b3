"""A small, offline Kustomize renderer for the tests of deploy/.

No kustomize or kubectl binary is available where the tests run, so this module
renders the kustomizations under deploy/ in pure Python. It implements only the
subset of Kustomize that deploy/ uses, following the semantics of kustomize v5:

* ``resources``: YAML files (multi-document) and directories holding a
  ``kustomization.yaml``; remote URLs are refused.
* ``namespace``: set on every namespaced object (cluster-scoped kinds are left alone).
* ``labels``: ``pairs`` added to ``metadata.labels``; ``includeTemplates`` also
  adds them to pod templates. ``includeSelectors: true`` is refused (it rewrites
  selectors, which this renderer does not do).
* ``images``: ``name`` / ``newName`` / ``newTag`` / ``digest`` for the containers
  and init containers of pods and pod templates.
* ``patches``: from ``path`` or inline ``patch``, with an optional ``target``
  (group, version, kind, name, namespace; name as an anchored regex). A patch
  that is a YAML list is JSON 6902 (add, remove, replace, move, copy, test) and
  needs a target; otherwise it is a strategic merge patch, matched on its own
  kind and name when no target is given.

Transformers run in kustomize's order: patches, namespace, labels, images.
Output is sorted in kustomize's default ("legacy") order.

Anything else in a kustomization (``commonLabels``, generators, replacements,
components, ``$patch`` directives other than ``delete`` in merge lists, ...)
raises :class:`KustomizeError` instead of being silently ignored, so that a new
feature used in deploy/ forces this renderer (and its tests) to grow with it.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

__all__ = ["KustomizeError", "build", "to_yaml"]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")

SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}

# Kinds that are not namespaced (subset relevant to typical manifests).
CLUSTER_SCOPED_KINDS = {
    "Namespace",
    "Node",
    "PersistentVolume",
    "StorageClass",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "PriorityClass",
    "RuntimeClass",
    "IngressClass",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "CSIDriver",
    "CSINode",
    "VolumeAttachment",
    "PodSecurityPolicy",
    "ComponentStatus",
    "CertificateSigningRequest",
    "FlowSchema",
    "PriorityLevelConfiguration",
}

# Workloads whose pod template gets labels with includeTemplates.
TEMPLATE_KINDS = {"Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "Job", "ReplicationController"}

# kustomize's legacy output order (api/resid/gvk.go): these kinds first, in
# this order, then every other kind, then the "last" kinds.
ORDER_FIRST = [
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
]
ORDER_LAST = ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]


class KustomizeError(Exception):
    """An unsupported feature, an invalid kustomization or a failed patch."""


# ---------------------------------------------------------------------------
# loading


def _load_yaml_docs(path: Path) -> list[dict]:
    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except yaml.YAMLError as exc:
        raise KustomizeError(f"{path}: invalid YAML: {exc}") from exc
    objs = []
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise KustomizeError(f"{path}: every document must be a Kubernetes object")
        if doc.get("kind", "").endswith("List") and "items" in doc:
            raise KustomizeError(f"{path}: List objects are not supported")
        objs.append(doc)
    return objs


def _kustomization_file(directory: Path) -> Path:
    for name in KUSTOMIZATION_FILES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    raise KustomizeError(f"{directory}: no kustomization file")


def _resid(obj: dict) -> tuple[str, str, str, str]:
    api = obj.get("apiVersion", "")
    group = api.split("/")[0] if "/" in api else ""
    meta = obj.get("metadata") or {}
    return (group, obj["kind"], meta.get("namespace") or "", meta.get("name") or "")


def _group_version(api_version: str) -> tuple[str, str]:
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return group, version
    return "", api_version


# ---------------------------------------------------------------------------
# strategic merge patch

# patchMergeKey of the list fields that deploy/ (and common manifests) patch,
# keyed on (parent field, list field). Lists not named here are replaced whole,
# as Kubernetes does for lists without a merge strategy (args, command,
# tolerations, ...).
MERGE_KEYS = {
    ("spec", "containers"): "name",
    ("spec", "initContainers"): "name",
    ("spec", "ephemeralContainers"): "name",
    ("spec", "volumes"): "name",
    ("spec", "imagePullSecrets"): "name",
    ("spec", "hostAliases"): "ip",
    ("spec", "topologySpreadConstraints"): "topologyKey",
    ("containers", "env"): "name",
    ("containers", "volumeMounts"): "mountPath",
    ("containers", "volumeDevices"): "devicePath",
    ("containers", "ports"): "containerPort",
    ("initContainers", "env"): "name",
    ("initContainers", "volumeMounts"): "mountPath",
    ("initContainers", "ports"): "containerPort",
}
SERVICE_PORTS_KEY = "port"


def _merge_key(kind: str, parent: str, field: str) -> str | None:
    if kind == "Service" and (parent, field) == ("spec", "ports"):
        return SERVICE_PORTS_KEY
    return MERGE_KEYS.get((parent, field))


def _smp_map(kind: str, target: dict, patch: dict, parent: str) -> dict:
    if "$patch" in patch:
        directive = patch["$patch"]
        if directive == "replace":
            out = {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
            return out
        raise KustomizeError(f"unsupported $patch directive {directive!r} on a map")
    out = dict(target)
    for key, value in patch.items():
        if key.startswith("$"):
            raise KustomizeError(f"unsupported strategic merge directive {key!r}")
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _smp_map(kind, out[key], value, key)
        elif isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = _smp_list(kind, out[key], value, parent, key)
        elif isinstance(value, dict):
            out[key] = _smp_map(kind, {}, value, key)
        elif isinstance(value, list):
            out[key] = _smp_list(kind, [], value, parent, key)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _smp_list(kind: str, target: list, patch: list, parent: str, field: str) -> list:
    merge_key = _merge_key(kind, parent, field)
    if merge_key is None:
        for item in patch:
            if isinstance(item, dict) and "$patch" in item:
                raise KustomizeError(f"$patch in list {field!r}, which has no merge key")
        return copy.deepcopy(patch)
    # kustomize (kyaml) order: the patch's elements first, in patch order, each
    # merged into its namesake from the target; then the target's elements the
    # patch does not mention, in target order.
    by_key = {item.get(merge_key): item for item in target if isinstance(item, dict)}
    out = []
    mentioned = set()
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise KustomizeError(f"items of {field!r} must be maps with {merge_key!r}")
        key = item[merge_key]
        if key in mentioned:
            raise KustomizeError(f"duplicate {merge_key}={key!r} in patch list {field!r}")
        mentioned.add(key)
        directive = item.get("$patch")
        if directive == "delete":
            continue
        if directive is not None:
            raise KustomizeError(f"unsupported $patch directive {directive!r} in list {field!r}")
        out.append(_smp_map(kind, copy.deepcopy(by_key.get(key, {})), item, field))
    out.extend(
        copy.deepcopy(item) for item in target if not (isinstance(item, dict) and item.get(merge_key) in mentioned)
    )
    return out


def strategic_merge(target: dict, patch: dict) -> dict:
    """Apply a strategic merge patch to a copy of ``target``."""
    patch = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind")}
    meta = dict(patch.get("metadata") or {})
    meta.pop("name", None)
    meta.pop("namespace", None)
    if meta:
        patch["metadata"] = meta
    else:
        patch.pop("metadata", None)
    return _smp_map(target["kind"], copy.deepcopy(target), patch, "")


# ---------------------------------------------------------------------------
# JSON 6902


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise KustomizeError(f"invalid JSON pointer {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _resolve_parent(doc: Any, parts: list[str], path: str) -> tuple[Any, str]:
    node = doc
    for part in parts[:-1]:
        node = _child(node, part, path)
    return node, parts[-1]


def _child(node: Any, part: str, path: str) -> Any:
    if isinstance(node, dict):
        if part not in node:
            raise KustomizeError(f"JSON patch path {path!r}: missing {part!r}")
        return node[part]
    if isinstance(node, list):
        index = _index(node, part, path, allow_end=False)
        return node[index]
    raise KustomizeError(f"JSON patch path {path!r}: cannot descend into a scalar")


def _index(node: list, part: str, path: str, allow_end: bool) -> int:
    if part == "-" and allow_end:
        return len(node)
    if not re.fullmatch(r"0|[1-9][0-9]*", part):
        raise KustomizeError(f"JSON patch path {path!r}: bad list index {part!r}")
    index = int(part)
    if index > len(node) or (index == len(node) and not allow_end):
        raise KustomizeError(f"JSON patch path {path!r}: index {index} out of range")
    return index


def _get(doc: Any, path: str) -> Any:
    node = doc
    for part in _pointer(path):
        node = _child(node, part, path)
    return node


def _remove(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        raise KustomizeError("cannot remove the whole document")
    parent, last = _resolve_parent(doc, parts, path)
    if isinstance(parent, dict):
        if last not in parent:
            raise KustomizeError(f"JSON patch remove {path!r}: missing {last!r}")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, path, allow_end=False))
    raise KustomizeError(f"JSON patch remove {path!r}: parent is a scalar")


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return copy.deepcopy(value)
    parent, last = _resolve_parent(doc, parts, path)
    if isinstance(parent, dict):
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, path, allow_end=True), copy.deepcopy(value))
    else:
        raise KustomizeError(f"JSON patch add {path!r}: parent is a scalar")
    return doc


def json6902(target: dict, ops: list) -> dict:
    """Apply RFC 6902 operations to a copy of ``target``."""
    doc = copy.deepcopy(target)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise KustomizeError(f"invalid JSON 6902 operation {op!r}")
        kind, path = op["op"], op["path"]
        if kind == "add":
            doc = _add(doc, path, op["value"])
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)  # must exist
            parts = _pointer(path)
            if not parts:
                doc = copy.deepcopy(op["value"])
            else:
                parent, last = _resolve_parent(doc, parts, path)
                key = last if isinstance(parent, dict) else _index(parent, last, path, False)
                parent[key] = copy.deepcopy(op["value"])
        elif kind == "move":
            value = _remove(doc, op["from"])
            doc = _add(doc, path, value)
        elif kind == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, op["from"])))
        elif kind == "test":
            actual = _get(doc, path)
            if actual != op["value"]:
                raise KustomizeError(f"JSON patch test failed at {path!r}: {actual!r} != {op['value']!r}")
        else:
            raise KustomizeError(f"unsupported JSON 6902 op {kind!r}")
    return doc


# ---------------------------------------------------------------------------
# transformers


def _matches_target(obj: dict, target: dict) -> bool:
    unsupported = set(target) - {"group", "version", "kind", "name", "namespace"}
    if unsupported:
        raise KustomizeError(f"unsupported patch target fields: {sorted(unsupported)}")
    group, version = _group_version(obj.get("apiVersion", ""))
    meta = obj.get("metadata") or {}
    checks = {
        "group": group,
        "version": version,
        "kind": obj.get("kind", ""),
        "name": meta.get("name", ""),
        "namespace": meta.get("namespace", "") or "",
    }
    for field, actual in checks.items():
        wanted = target.get(field)
        if wanted is None:
            continue
        if not re.fullmatch(str(wanted), actual):
            return False
    return True


def _apply_patches(objs: list[dict], patches: list, root: Path) -> list[dict]:
    for entry in patches:
        if not isinstance(entry, dict):
            raise KustomizeError(f"{root}: patches entries must be maps")
        unsupported = set(entry) - {"path", "patch", "target"}
        if unsupported:
            raise KustomizeError(f"{root}: unsupported patch fields {sorted(unsupported)}")
        if ("path" in entry) == ("patch" in entry):
            raise KustomizeError(f"{root}: a patch needs exactly one of path/patch")
        if "path" in entry:
            text = _local_file(root, entry["path"]).read_text()
        else:
            text = entry["patch"]
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
        target = entry.get("target")
        if len(docs) == 1 and isinstance(docs[0], list):
            if target is None:
                raise KustomizeError(f"{root}: a JSON 6902 patch needs a target")
            hits = [i for i, o in enumerate(objs) if _matches_target(o, target)]
            if not hits:
                raise KustomizeError(f"{root}: patch target {target} matches nothing")
            for i in hits:
                objs[i] = json6902(objs[i], docs[0])
            continue
        for doc in docs:
            if not isinstance(doc, dict):
                raise KustomizeError(f"{root}: a strategic merge patch must be a map")
            if target is not None:
                hits = [i for i, o in enumerate(objs) if _matches_target(o, target)]
            else:
                meta = doc.get("metadata") or {}
                hits = [
                    i
                    for i, o in enumerate(objs)
                    if o["kind"] == doc.get("kind")
                    and _group_version(o["apiVersion"])[0] == _group_version(doc.get("apiVersion", ""))[0]
                    and (o.get("metadata") or {}).get("name") == meta.get("name")
                    and ("namespace" not in meta or (o.get("metadata") or {}).get("namespace") == meta["namespace"])
                ]
                if len(hits) > 1:
                    raise KustomizeError(f"{root}: patch for {doc.get('kind')}/{meta.get('name')} is ambiguous")
            if not hits:
                raise KustomizeError(f"{root}: strategic merge patch matches nothing: {doc.get('kind')}")
            for i in hits:
                objs[i] = strategic_merge(objs[i], doc)
    return objs


def _apply_namespace(objs: list[dict], namespace: str) -> None:
    for obj in objs:
        if obj["kind"] in CLUSTER_SCOPED_KINDS:
            continue
        obj.setdefault("metadata", {})["namespace"] = namespace


def _apply_labels(objs: list[dict], entries: list, root: Path) -> None:
    for entry in entries:
        unsupported = set(entry) - {"pairs", "includeSelectors", "includeTemplates"}
        if unsupported:
            raise KustomizeError(f"{root}: unsupported labels fields {sorted(unsupported)}")
        if entry.get("includeSelectors"):
            raise KustomizeError(f"{root}: labels.includeSelectors: true is not supported")
        pairs = {str(k): str(v) for k, v in (entry.get("pairs") or {}).items()}
        for obj in objs:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
            if entry.get("includeTemplates") and obj["kind"] in TEMPLATE_KINDS:
                template = obj.setdefault("spec", {}).setdefault("template", {})
                template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)


_IMAGE_RE = re.compile(r"^(?P<name>[^@]+?)(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>.+))?$")


def _split_image(image: str) -> tuple[str, str | None, str | None]:
    match = _IMAGE_RE.match(image)
    if not match:
        raise KustomizeError(f"cannot parse image {image!r}")
    return match["name"], match["tag"], match["digest"]


def _pod_specs(obj: dict) -> list[dict]:
    spec = obj.get("spec") or {}
    kind = obj["kind"]
    if kind == "Pod":
        return [spec]
    if kind == "CronJob":
        return [((spec.get("jobTemplate") or {}).get("spec") or {}).get("template", {}).get("spec") or {}]
    template = spec.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        return [template["spec"]]
    return []


def _apply_images(objs: list[dict], entries: list, root: Path) -> None:
    for entry in entries:
        unsupported = set(entry) - {"name", "newName", "newTag", "digest"}
        if unsupported or "name" not in entry:
            raise KustomizeError(f"{root}: unsupported images entry {entry!r}")
        for obj in objs:
            for pod in _pod_specs(obj):
                for field in ("containers", "initContainers"):
                    for container in pod.get(field) or []:
                        image = container.get("image")
                        if not image:
                            continue
                        name, tag, digest = _split_image(image)
                        if name != entry["name"]:
                            continue
                        name = entry.get("newName", name)
                        if "digest" in entry:
                            container["image"] = f"{name}@{entry['digest']}"
                        elif "newTag" in entry:
                            container["image"] = f"{name}:{entry['newTag']}"
                        else:
                            suffix = (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
                            container["image"] = name + suffix


# ---------------------------------------------------------------------------
# build


def _local_file(root: Path, rel: str) -> Path:
    if "://" in rel or rel.startswith(("github.com/", "git@")):
        raise KustomizeError(f"{root}: remote resources are not supported: {rel}")
    path = (root / rel).resolve()
    if not path.exists():
        raise KustomizeError(f"{root}: {rel} does not exist")
    return path


def _sort_key(obj: dict) -> tuple:
    kind = obj["kind"]
    if kind in ORDER_FIRST:
        rank = ORDER_FIRST.index(kind)
    elif kind in ORDER_LAST:
        rank = len(ORDER_FIRST) + 1 + ORDER_LAST.index(kind)
    else:
        rank = len(ORDER_FIRST)
    group, version = _group_version(obj.get("apiVersion", ""))
    meta = obj.get("metadata") or {}
    # kustomize's legacy order: by kind rank, then GVK string, then namespace, then name.
    gvk = f"{group or '~G'}_{version}_{kind}"
    return (rank, gvk if rank == len(ORDER_FIRST) else "", meta.get("namespace") or "", meta.get("name") or "")


def _build(directory: Path, stack: tuple[Path, ...]) -> list[dict]:
    directory = directory.resolve()
    if directory in stack:
        raise KustomizeError(f"cycle in kustomizations: {directory}")
    kfile = _kustomization_file(directory)
    spec = yaml.safe_load(kfile.read_text()) or {}
    if not isinstance(spec, dict):
        raise KustomizeError(f"{kfile}: not a map")
    if spec.get("kind", "Kustomization") != "Kustomization":
        raise KustomizeError(f"{kfile}: kind {spec.get('kind')!r} is not supported")
    unsupported = set(spec) - SUPPORTED_FIELDS
    if unsupported:
        raise KustomizeError(f"{kfile}: unsupported kustomization fields {sorted(unsupported)}")

    objs: list[dict] = []
    for rel in spec.get("resources") or []:
        path = _local_file(directory, rel)
        if path.is_dir():
            objs.extend(_build(path, stack + (directory,)))
        else:
            objs.extend(_load_yaml_docs(path))

    seen: set = set()
    for obj in objs:
        rid = _resid(obj)
        if rid in seen:
            raise KustomizeError(f"{kfile}: duplicate resource {rid}")
        seen.add(rid)

    objs = _apply_patches(objs, spec.get("patches") or [], directory)
    if spec.get("namespace"):
        _apply_namespace(objs, spec["namespace"])
    _apply_labels(objs, spec.get("labels") or [], directory)
    _apply_images(objs, spec.get("images") or [], directory)
    return objs


def build(directory: str | Path) -> list[dict]:
    """Render the kustomization in ``directory`` into a list of objects."""
    objs = _build(Path(directory), ())
    return sorted(objs, key=_sort_key)


def to_yaml(objs: list[dict]) -> str:
    return "---\n".join(yaml.safe_dump(o, sort_keys=True) for o in objs)


if __name__ == "__main__":  # pragma: no cover - manual use: python kustomize_render.py DIR
    import sys

    sys.stdout.write(to_yaml(build(sys.argv[1])))
