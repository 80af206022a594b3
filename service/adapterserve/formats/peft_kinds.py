"""PEFT 0.21 IA3, PREFIX_TUNING and PROMPT_TUNING folders (save_pretrained), beside LoRA in peft.py.

- IA3: `...<module>.ia3_l` per wrapped linear. Shape [1, in] marks a feed-forward module (PEFT scales its
  input: W(x * l) + b), [out, 1] any other (its output is scaled: (Wx + b) * l). PEFT's default BERT
  feed-forward list ["output.dense"] also matches attention.output.dense by suffix, and the saved shape
  says so; the shape is what PEFT itself built the module from, so it decides.
- PREFIX_TUNING: `prompt_embeddings` [P, layers*2*H], already the output of the projection MLP when
  prefix_projection was on (PEFT saves it that way). Row 2j/2j+1 = layer j's keys/values, passed to the
  model as past key values, so the text's position ids start at P.
- PROMPT_TUNING: `prompt_embeddings` [P, H] put before the word embeddings (text or random init only
  matter for training: the trained vectors are saved).
The classifier is saved as `base_model.classifier.*` by prompt learning, `base_model.model.classifier.*` by IA3.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..adapters.model import LINEAR_SITES, Adapter, Ia3Site
from ..errors import InvalidAdapter, UnsupportedAdapter
from . import peft
from .peft import GLOBAL_RE, LAYER_RE, NAME, WEIGHTS, _read_peft_head, _split
from .peft_config import PEFT_TASK_TYPES
from .sidecar import read_sidecar
from .weights import first_existing, load_tensors, read_json


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    weights = first_existing(folder, WEIGHTS)
    if weights is None:
        raise InvalidAdapter(f"the folder has no adapter weights ({' or '.join(WEIGHTS)})")
    out = {}
    for key, t in load_tensors(weights).items():
        if ".original_module." in key:  # modules_to_save keeps the untrained original too; it is never used
            continue
        if key.startswith("base_model.") and not key.startswith("base_model.model."):
            key = "base_model.model." + key.removeprefix("base_model.")  # prompt learning's classifier
        module, param = _split(key)
        out[f"{module}.{param}" if module else param] = t
    return out


def _int(cfg: dict, key: str, lo: int = 1) -> int:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise InvalidAdapter(f"adapter_config.json: {key} must be an integer >= {lo}, got {value!r}", key=key)
    return value


def _prompt_rows(cfg: dict, tensors: dict, hidden: int, width: int, what: str) -> torch.Tensor:
    P = _int(cfg, "num_virtual_tokens")
    if cfg.get("token_dim") not in (None, hidden):
        raise InvalidAdapter(
            f"adapter_config.json: token_dim {cfg['token_dim']} != the backbone's hidden size {hidden}"
        )
    if cfg.get("num_transformer_submodules", 1) != 1:
        raise UnsupportedAdapter("adapter_config.json: num_transformer_submodules != 1 is for encoder-decoder models")
    t = tensors.pop("prompt_embeddings", None)
    if t is None:
        raise InvalidAdapter("adapter weights lack 'prompt_embeddings'", key="prompt_embeddings")
    if tuple(t.shape) != (P, width):
        raise InvalidAdapter(
            f"prompt_embeddings has shape {tuple(t.shape)}, expected {(P, width)} ({what})", key="prompt_embeddings"
        )
    return t


def _finish(cfg: dict, folder: Path, tensors: dict, hidden: int, **fields) -> Adapter:
    head = _read_peft_head(tensors, PEFT_TASK_TYPES[cfg["task_type"]], hidden, read_sidecar(folder))
    if tensors:
        key = sorted(tensors)[0]
        raise InvalidAdapter(f"adapter weights: unexpected key {key!r}", key=key)
    return Adapter(head=head, hidden_size=hidden, format=NAME, **fields)


def load_ia3(cfg: dict, folder: Path, hidden: int, num_layers: int, shapes: dict) -> Adapter:
    shapes = {**shapes, "pooler.dense": (hidden, hidden)}
    tensors = _tensors(folder)
    sites = {}
    for key in [k for k in tensors if k.endswith(".ia3_l")]:
        t = tensors.pop(key)
        module = key.removesuffix(".ia3_l")
        m, g = LAYER_RE.match(module), GLOBAL_RE.match(module)
        if g and g.group(1) == "pooler.dense":
            layer, site = -1, "pooler.dense"
        elif m and m.group(2) in LINEAR_SITES:
            layer, site = int(m.group(1)), m.group(2)
        else:
            raise UnsupportedAdapter(
                f"IA3 on module {module!r} is not supported; IA3 may target {list(LINEAR_SITES)} and the pooler",
                key=key,
            )
        if layer >= num_layers:
            raise InvalidAdapter(f"IA3 weights for layer {layer} but the backbone has {num_layers} layers", key=key)
        out_dim, in_dim = shapes[site]
        if tuple(t.shape) == (1, in_dim):
            sites[(layer, site)] = Ia3Site(t.flatten(), on_input=True)
        elif tuple(t.shape) == (out_dim, 1):
            sites[(layer, site)] = Ia3Site(t.flatten(), on_input=False)
        else:
            raise InvalidAdapter(
                f"IA3 vector {key!r} has shape {tuple(t.shape)}; expected [1, {in_dim}] (feed-forward) or "
                f"[{out_dim}, 1] for this backbone",
                key=key,
            )
    if not sites:
        raise InvalidAdapter("IA3 adapter weights hold no ia3_l vectors")
    return _finish(cfg, folder, tensors, hidden, kind="ia3", ia3=sites)


def load_prefix(cfg: dict, folder: Path, hidden: int, num_layers: int, shapes: dict) -> Adapter:
    if cfg.get("num_layers") not in (None, num_layers):
        raise InvalidAdapter(
            f"adapter_config.json: num_layers {cfg['num_layers']} != the backbone's {num_layers} layers",
            key="num_layers",
        )
    tensors = _tensors(folder)
    kv = _prompt_rows(cfg, tensors, hidden, num_layers * 2 * hidden, f"{num_layers} layers x 2 x hidden {hidden}")
    kv = kv.reshape(kv.shape[0], num_layers * 2, hidden)
    prefix = {i: (kv[:, 2 * i].contiguous(), kv[:, 2 * i + 1].contiguous()) for i in range(num_layers)}
    return _finish(cfg, folder, tensors, hidden, kind="prefix", prefix=prefix, prefix_shifts_positions=True)


def load_prompt(cfg: dict, folder: Path, hidden: int, num_layers: int, shapes: dict) -> Adapter:
    tensors = _tensors(folder)
    prompt = _prompt_rows(cfg, tensors, hidden, hidden, f"hidden {hidden}")
    return _finish(cfg, folder, tensors, hidden, kind="prompt", prompt=prompt)


PEFT_TYPES = {"IA3": load_ia3, "PREFIX_TUNING": load_prefix, "PROMPT_TUNING": load_prompt}


def load(folder: Path, hidden_size: int, num_layers: int, linear_shapes: dict[str, tuple[int, int]]) -> Adapter:
    """The PEFT format's loader: these types here, LORA (and refusals of anything else) in peft.py."""
    cfg = read_json(folder / "adapter_config.json")
    peft_type = cfg.get("peft_type")
    loader = PEFT_TYPES.get(peft_type) if isinstance(peft_type, str) else None
    if loader is None:
        return peft.load(folder, hidden_size, num_layers, linear_shapes)
    task_type = cfg.get("task_type")
    if not isinstance(task_type, str) or task_type not in PEFT_TASK_TYPES:
        raise UnsupportedAdapter(f"PEFT task_type {task_type!r} is not served; use SEQ_CLS or TOKEN_CLS")
    adapter = loader(cfg, folder, hidden_size, num_layers, linear_shapes)
    base = cfg.get("base_model_name_or_path")
    if base:
        adapter.warnings.append(f"trained on base model {base!r}; compatibility was checked by shapes")
    return adapter


def describe(folder: Path) -> dict:
    """What the listing shows, from the config alone (LORA: peft.describe)."""
    cfg = read_json(folder / "adapter_config.json")
    peft_type = cfg.get("peft_type")
    if not isinstance(peft_type, str) or peft_type not in PEFT_TYPES:
        return peft.describe(folder)
    if not isinstance(cfg.get("task_type"), str) or cfg["task_type"] not in PEFT_TASK_TYPES:
        raise UnsupportedAdapter(f"PEFT task_type {cfg.get('task_type')!r} is not served; use SEQ_CLS or TOKEN_CLS")
    if first_existing(folder, WEIGHTS) is None:
        raise InvalidAdapter(f"the folder has no adapter weights ({' or '.join(WEIGHTS)})")
    sidecar = read_sidecar(folder)
    kind = {"IA3": "ia3", "PREFIX_TUNING": "prefix", "PROMPT_TUNING": "prompt"}[peft_type]
    return {
        "kind": kind,
        "task": sidecar.get("task") or PEFT_TASK_TYPES[cfg["task_type"]],
        "labels": sidecar.get("labels"),
    }
