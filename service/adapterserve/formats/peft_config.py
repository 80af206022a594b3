"""PEFT 0.21 LoraConfig (adapter_config.json), read field by field (no tensors), and PEFT's own rules for
which modules a config targets and which rank and alpha each gets.

Mirrors peft.tuners.tuners_utils.check_target_module_exists and peft.utils.other.get_pattern_key, and the
checks LoraConfig.__post_init__ and LoraLayer.update_layer make, so a folder PEFT refuses to load is refused
here with the key named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UnsupportedAdapter
from .fields import Fields

CONFIG = "adapter_config.json"
# the sidecar may say multilabel
PEFT_TASK_TYPES = {"SEQ_CLS": "classification", "TOKEN_CLS": "tagging", "QUESTION_ANS": "qa"}
# LoRA variants whose forward differs from plain LoRA (LoraConfig fields PEFT marks is_lora_variant, and
# others that change what is computed): refuse rather than serve wrong logits.
VARIANTS = [
    "use_dora",
    "velora_config",
    "monteclora_config",
    "use_bdlora",
    "arrow_config",
    "kasa_config",
    "lora_bias",
    "use_qalora",
    "layer_replication",
    "trainable_token_indices",
    "target_parameters",
    "alora_invocation_tokens",
]
BIAS = ["none", "all", "lora_only"]
# PEFT's defaults when target_modules is null (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING, the same
# for bert, roberta and xlm-roberta) and its expansion of "all-linear" for a classification BERT (every
# Linear's last name, the classifier excluded).
DEFAULT_TARGETS = ["query", "value"]
ALL_LINEAR = ["query", "key", "value", "dense"]
# The patterns PEFT builds from config strings ({} is the string); each must compile as PEFT builds it.
PATTERN_TEMPLATE = r"(.*\.)?({})$"  # rank_pattern / alpha_pattern keys (get_pattern_key)
SAVE_TEMPLATE = r"(^|.*\.){}($|\..*)"  # modules_to_save entries
LAYERS_TEMPLATE = r"(?:^|.*?\.){}\.(?P<idx>\d+)\."  # layers_pattern entries

# LoraConfig fields that do not change the forward pass of what we serve, with the types PEFT declares.
DECLARED = {
    "peft_version": "str?",
    "revision": "str?",
    "auto_mapping": "object?",
    "inference_mode": "bool?",
    "megatron_core": "str?",
    "megatron_config": "object?",
    "loftq_config": "object?",
    "qalora_group_size": "int?",
    "ensure_weight_tying": "bool?",
    "eva_config": "object?",
    "corda_config": "object?",
}


@dataclass(frozen=True)
class LoraSettings:
    task: str
    r: int
    alpha: float
    rslora: bool
    bias: str
    fan_in_fan_out: bool
    target_modules: str | list[str]
    exclude_modules: str | list[str] | None
    layers_to_transform: int | list[int] | None
    layers_pattern: list[str] | None
    modules_to_save: list[str] | None
    rank_pattern: dict[str, int]
    alpha_pattern: dict[str, float]
    base_model: str | None

    def targets(self, key: str) -> bool:
        """Whether PEFT puts LoRA on the module named key (check_target_module_exists)."""
        excl = self.exclude_modules
        if excl:
            if isinstance(excl, str):
                if re.fullmatch(excl, key):
                    return False
            elif key in excl or any(key.endswith(f".{e}") for e in excl):
                return False
        if self.modules_to_save and any(re.match(SAVE_TEMPLATE.replace("{}", m), key) for m in self.modules_to_save):
            return False
        tm = self.target_modules
        if isinstance(tm, str):
            return re.fullmatch(tm, key) is not None
        if key in tm:
            return True
        if not any(key.endswith(f".{t}") for t in tm):
            return False
        layers = self.layers_to_transform
        if layers is None or (isinstance(layers, list) and not layers):
            return True
        match = None
        if not self.layers_pattern:
            match = re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", key)
        else:
            for pattern in self.layers_pattern:
                match = re.match(LAYERS_TEMPLATE.replace("{}", pattern), key)
                if match is not None:
                    break
        if match is None:
            return False
        index = int(match.group("idx"))
        return index == layers if isinstance(layers, int) else index in layers

    def rank(self, module: str) -> int:
        return _pattern_value(self.rank_pattern, module, self.r)

    def module_alpha(self, module: str) -> float:
        return _pattern_value(self.alpha_pattern, module, self.alpha)


def _pattern_value(patterns: dict, module: str, default):
    """PEFT's get_pattern_key: a key k matches a module name by re.match(rf"(.*\\.)?({k})$", name)."""
    for key, value in patterns.items():
        if re.match(PATTERN_TEMPLATE.replace("{}", key), module):
            return value
    return default


def read_lora_config(data: dict) -> LoraSettings:
    f = Fields(data, CONFIG)
    peft_type = f.str("peft_type")
    if peft_type != "LORA":
        raise UnsupportedAdapter(
            f"{CONFIG}: PEFT type {peft_type!r} is not served; served: LORA, IA3, PREFIX_TUNING, PROMPT_TUNING",
            key="peft_type",
        )
    for key in VARIANTS:
        if data.get(key):
            raise UnsupportedAdapter(
                f"{CONFIG}: {key}={data[key]!r} is a LoRA variant adapterserve does not serve; retrain as plain LoRA",
                key=key,
            )
    task_type = f.str("task_type", None, nullable=True)
    if task_type not in PEFT_TASK_TYPES:
        raise UnsupportedAdapter(
            f"{CONFIG}: task_type {task_type!r} is not served; use SEQ_CLS, TOKEN_CLS or QUESTION_ANS", key="task_type"
        )
    # LoraLayer.update_layer refuses r <= 0; a non-integer r cannot size nn.Linear.
    r = f.int("r", 8, min=1)
    target = f.raw("target_modules")
    if target is None:
        target = DEFAULT_TARGETS
    elif isinstance(target, str):
        target = ALL_LINEAR if target.lower() == "all-linear" else target
        if isinstance(target, str):
            f.regex("target_modules")
    else:
        target = f.list("target_modules", None, f.a_str(nonempty=True))
    exclude = f.raw("exclude_modules")
    if isinstance(exclude, str):
        f.regex("exclude_modules")
    else:
        exclude = f.list("exclude_modules", None, f.a_str(nonempty=True), nullable=True)
    layers = f.raw("layers_to_transform")
    if _is_int(layers):
        layers = f.int("layers_to_transform", min=0)
    else:
        layers = f.list("layers_to_transform", None, f.an_int(min=0), nullable=True)
    patterns = f.list("layers_pattern", None, f.a_str(), nullable=True, scalar=True)
    for i, pattern in enumerate(patterns or []):
        f.a_regex(f"layers_pattern[{i}]", pattern, LAYERS_TEMPLATE)
    if isinstance(target, str) and layers is not None:
        raise f.fail("layers_to_transform", "cannot be used when target_modules is a string (a regex)", layers)
    if isinstance(target, str) and patterns is not None:
        raise f.fail("layers_pattern", "cannot be used when target_modules is a string (a regex)", patterns)
    if patterns and layers is None:
        raise f.fail("layers_pattern", "needs layers_to_transform as well", patterns)
    modules_to_save = f.list("modules_to_save", None, f.a_str(nonempty=True), nullable=True)
    for m in modules_to_save or []:
        f.a_regex("modules_to_save", m, SAVE_TEMPLATE)
    f.number("lora_dropout", 0.0, max=1.0)  # nn.Dropout(p) refuses p > 1
    f.declared(DECLARED)
    init = f.raw("init_lora_weights", True)
    if not isinstance(init, (bool, str)):
        raise f.fail("init_lora_weights", "must be true, false or the name of an initialisation", init)
    if isinstance(init, str) and init.startswith("mica"):  # a LoRA variant selected by its initialisation
        raise UnsupportedAdapter(
            f"{CONFIG}: init_lora_weights={init!r} is a LoRA variant adapterserve does not serve",
            key="init_lora_weights",
        )
    return LoraSettings(
        task=PEFT_TASK_TYPES[task_type],
        r=r,
        alpha=f.number("lora_alpha", 8),
        rslora=f.bool("use_rslora", False),
        bias=f.choice("bias", "none", BIAS),
        fan_in_fan_out=f.bool("fan_in_fan_out", False),
        target_modules=target,
        exclude_modules=exclude,
        layers_to_transform=layers,
        layers_pattern=patterns,
        modules_to_save=modules_to_save,
        rank_pattern=f.regex_map("rank_pattern", f.an_int(min=1), template=PATTERN_TEMPLATE),
        alpha_pattern=f.regex_map("alpha_pattern", f.a_number(), template=PATTERN_TEMPLATE),
        base_model=f.str("base_model_name_or_path", None, nullable=True),
    )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
