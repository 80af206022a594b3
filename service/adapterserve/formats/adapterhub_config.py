"""AdapterHub `adapters` 1.3.0 config files, read field by field (no tensors): adapter_config.json's
bottleneck config (BnConfig) and head_config.json. Every key the forward pass depends on is type- and
range-checked as the library's dataclasses declare it; what the library refuses to build is refused here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .. import tasks
from ..adapters.activations import ACTIVATIONS
from ..adapters.model import BottleneckConfig
from ..errors import InvalidAdapter, UnsupportedAdapter
from .fields import Fields

CONFIG = "adapter_config.json"
MAX_WIDTH = 1 << 20  # a bottleneck wider than this is no adapter (and its weights could not be uploaded)
HEAD_CONFIG = "head_config.json"

# Full presets, for configs that name one instead of spelling out the keys.
PRESETS = {
    "seq_bn": dict(
        mh_adapter=False, output_adapter=True, reduction_factor=16, non_linearity="relu", original_ln_before=True
    ),
    "double_seq_bn": dict(mh_adapter=True, output_adapter=True, reduction_factor=16, non_linearity="swish"),
}
PRESETS["pfeiffer"], PRESETS["houlsby"] = PRESETS["seq_bn"], PRESETS["double_seq_bn"]
LEGACY_ACTIVATIONS = {"gelu": "gelu_new", "gelu_orig": "gelu"}  # configs saved before `version` existed
# Options that change the forward pass in ways we do not implement: refuse rather than serve wrong logits.
UNSUPPORTED_TRUE = ["is_parallel", "phm_layer", "use_gating", "cross_adapter"]

# Static heads (a *ForSequenceClassification saved with adapters): how their modules map to a flex head.
STATIC_HEADS = {
    "BertForSequenceClassification": ("classification", "pooler", None, ["classifier"]),
    "BertForTokenClassification": ("tagging", "tokens", None, ["classifier"]),
    "RobertaForSequenceClassification": ("classification", "cls", "tanh", ["classifier.dense", "classifier.out_proj"]),
    "RobertaForTokenClassification": ("tagging", "tokens", None, ["classifier"]),
    "XLMRobertaForSequenceClassification": (
        "classification",
        "cls",
        "tanh",
        ["classifier.dense", "classifier.out_proj"],
    ),
    "XLMRobertaForTokenClassification": ("tagging", "tokens", None, ["classifier"]),
}
# BnConfig fields that do not change the forward pass of what we serve, with the types adapters declares.
BN_DECLARED = {
    "init_weights": "str",
    "init_weights_seed": "int?",
    "inv_adapter_reduction_factor": "number?",
    "phm_dim": "int",
    "factorized_phm_W": "bool?",
    "shared_W_phm": "bool?",
    "shared_phm_rule": "bool?",
    "factorized_phm_rule": "bool?",
    "phm_c_init": "str?",
    "phm_init_range": "number?",
    "learn_phm": "bool?",
    "hypercomplex_nonlinearity": "str?",
    "phm_rank": "int?",
    "phm_bias": "bool?",
    "stochastic_depth": "number?",
}
# Top-level keys save_adapter writes beside "config" (descriptive only).
TOP_DECLARED = {"name": "str?", "model_name": "str?", "model_type": "str?", "model_class": "str?", "version": "str?"}


@dataclass(frozen=True)
class BottleneckSettings:
    """The validated BnConfig: what the weights must look like and how the layer computes."""

    mh_adapter: bool
    output_adapter: bool
    reduction_factor: float | dict[str, float]
    leave_out: frozenset[int]
    scaling: float | str  # a number, "learned" or "channel"
    forward: BottleneckConfig

    def width(self, layer: int, hidden: int) -> int:
        """The bottleneck width at a layer, as adapters computes it: int(hidden // rf), at least 1."""
        rf = self.reduction_factor
        if isinstance(rf, dict):
            rf = rf.get(str(layer), rf.get("default"))
        width = hidden // rf
        if not math.isfinite(width) or width > MAX_WIDTH:  # e.g. rf=1e-320: hidden // rf is infinite
            raise InvalidAdapter(
                f"{CONFIG}: config.reduction_factor {rf!r} gives a bottleneck of {width} units at layer {layer}",
                key="config.reduction_factor",
                file=CONFIG,
            )
        return max(1, int(width))

    def sites(self, num_layers: int) -> set[tuple[int, str]]:
        on = [s for s, flag in (("mh", self.mh_adapter), ("output", self.output_adapter)) if flag]
        return {(i, s) for i in range(num_layers) if i not in self.leave_out for s in on}


def read_adapter_config(data: dict) -> BottleneckSettings:
    top = Fields(data, CONFIG)
    top.int("hidden_size", None, min=1, nullable=True)
    top.declared(TOP_DECLARED)
    legacy = not top.has("version")
    raw = data.get("config")
    if isinstance(raw, str):
        if raw not in PRESETS:
            raise UnsupportedAdapter(
                f"{CONFIG}: config names unknown preset {raw!r}; known: {sorted(PRESETS)}", key="config"
            )
        raw = dict(PRESETS[raw])
    f = Fields(raw, CONFIG, "config.") if raw is not None else top.sub("config")
    arch = f.raw("architecture")
    if arch not in (None, "bottleneck"):
        raise UnsupportedAdapter(
            f"{CONFIG}: architecture {arch!r} is not served; adapterserve serves "
            "bottleneck adapters from AdapterHub and LoRA adapters in PEFT format",
            key="config.architecture",
        )
    f.require("mh_adapter", "output_adapter", "reduction_factor", "non_linearity")  # BnConfig has no defaults
    for key in UNSUPPORTED_TRUE:
        if f.bool(key, False, nullable=True):
            raise UnsupportedAdapter(f"{CONFIG}: config.{key}=true is not supported", key=f"config.{key}")
    inv = f.str("inv_adapter", None, nullable=True)
    if inv:
        raise UnsupportedAdapter(f"{CONFIG}: config.inv_adapter={inv!r} is not supported", key="config.inv_adapter")
    if f.raw("invertible_adapter"):  # the v1 spelling of the same option
        raise UnsupportedAdapter(
            f"{CONFIG}: config.invertible_adapter is not supported", key="config.invertible_adapter"
        )
    f.number("dropout", 0.0, min=0.0, max=1.0)
    f.declared(BN_DECLARED)

    act = f.str("non_linearity", nonempty=True).lower()
    if legacy:
        act = LEGACY_ACTIVATIONS.get(act, act)
    if act not in ACTIVATIONS:
        raise f.fail("non_linearity", f"must be one of {sorted(ACTIVATIONS)}", f.raw("non_linearity"))
    rbl = f.choice("residual_before_ln", True, [True, False, "post_add"])
    original_ln_before = f.bool("original_ln_before", False)
    if rbl == "post_add" and not original_ln_before:
        raise f.fail("residual_before_ln", "may be 'post_add' only with original_ln_before=true", rbl)
    scaling = f.raw("scaling", 1.0)
    if not isinstance(scaling, str):
        f.number("scaling", 1.0)
    elif scaling not in ("learned", "channel"):
        raise f.fail("scaling", "must be a number, 'learned' or 'channel'", scaling)

    rf = f.raw("reduction_factor")
    if isinstance(rf, dict):
        rf = f.dict("reduction_factor", None, f.a_number(above=0))
        for k in rf:
            if k != "default" and not k.isdigit():
                raise f.fail("reduction_factor", f"keys must be layer indexes or 'default', not {k!r}")
    else:
        f.number("reduction_factor", above=0)
    forward = BottleneckConfig(
        non_linearity=act,
        original_ln_before=original_ln_before,
        original_ln_after=f.bool("original_ln_after", True),
        residual_before_ln=rbl,
        adapter_residual_before_ln=f.bool("adapter_residual_before_ln", False),
        ln_before=f.bool("ln_before", False),
        ln_after=f.bool("ln_after", False),
    )
    return BottleneckSettings(
        mh_adapter=f.bool("mh_adapter"),
        output_adapter=f.bool("output_adapter"),
        reduction_factor=rf,
        leave_out=frozenset(f.list("leave_out", [], f.an_int(min=0), nullable=True) or []),
        scaling=scaling,
        forward=forward,
    )


def check_reduction_layers(settings: BottleneckSettings, num_layers: int) -> None:
    """A reduction_factor mapping must give every placed layer a factor ('default' or its index)."""
    rf = settings.reduction_factor
    if isinstance(rf, dict) and "default" not in rf:
        for layer, _ in sorted(settings.sites(num_layers)):
            if str(layer) not in rf:
                raise Fields(rf, CONFIG, "config.").fail(
                    "reduction_factor", f"gives no factor for layer {layer} and has no 'default' entry"
                )


@dataclass(frozen=True)
class HeadSettings:
    task: str
    pooling: str
    activation: str | None
    labels: list[str] | None  # from label2id, in id order
    num_labels: int | None  # what the config declares; the weights must agree
    layers: int | None  # flex heads: the number of Linear layers
    modules: list[str] | None  # static heads: the module names of the Linear layers
    bias: bool


def _labels(f: Fields, key: str) -> list[str] | None:
    label2id = f.dict(key, None, f.an_int(min=0), nullable=True)
    if not label2id:
        return None
    ids = sorted(label2id.values())
    if ids != list(range(len(ids))):
        raise f.fail(key, f"must map each label to a distinct id 0..{len(ids) - 1}", label2id)
    return [k for k, _ in sorted(label2id.items(), key=lambda kv: kv[1])]


def _activation(f: Fields, key: str) -> str | None:
    act = f.str(key, None, nullable=True)
    if act is not None and act.lower() not in ACTIVATIONS:
        raise f.fail(key, f"must be one of {sorted(ACTIVATIONS)} or null", act)
    return act


def read_head_config(data: dict) -> HeadSettings:
    top = Fields(data, HEAD_CONFIG)
    top.int("hidden_size", None, min=1, nullable=True)
    top.declared(TOP_DECLARED)
    if data.get("config") is None:
        model_class = top.str("model_class", None, nullable=True)
        if model_class not in STATIC_HEADS:
            raise UnsupportedAdapter(
                f"{HEAD_CONFIG}: static head of {model_class!r} is not supported; supported: {sorted(STATIC_HEADS)}",
                key="model_class",
            )
        task, pooling, act, modules = STATIC_HEADS[model_class]
        labels = _labels(top, "label2id")
        return HeadSettings(task, pooling, act, labels, None, None, modules, True)
    f = top.sub("config")
    head_type = f.str("head_type")
    head_types = tasks.by_adapterhub_head_type()
    if head_type not in head_types:
        raise UnsupportedAdapter(
            f"{HEAD_CONFIG}: head_type {head_type!r} is not served; served: {sorted(head_types)}",
            key="config.head_type",
        )
    task = tasks.get(head_types[head_type])
    use_pooler = f.bool("use_pooler", False)
    pooling = "tokens" if task.per_token else ("pooler" if use_pooler else "cls")
    f.number("dropout_prob", None, min=0.0, max=1.0, nullable=True)
    return HeadSettings(
        task=task.name,
        pooling=pooling,
        activation=_activation(f, "activation_function"),
        labels=_labels(f, "label2id"),
        num_labels=f.int("num_labels", None, min=1, nullable=True),
        layers=f.int("layers", task.default_head_layers, min=1, max=64),
        modules=None,
        bias=f.bool("bias", True),
    )
