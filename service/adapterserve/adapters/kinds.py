"""The serving-side adapter-kind registry: what each kind stores in an `Adapter` and the batch math it adds.

A kind (bottleneck, LoRA, IA3, prefix, prompt) is one `Kind`, defined by its own module (`KIND` in
bottleneck.py, lora.py, ...) and registered by adapters/__init__.py. It names the `Adapter` attributes
holding its weights and settings, enumerates and moves their tensors (`Adapter.tensors`, `Adapter.to`),
says how many positions a row of it takes before its text, and supplies the hooks `AdapterBatch` calls at
the backbone's insertion points. A batch asks each kind once per batch where its rows use it (`sites`); each
hook then runs once per call for the kinds some row uses, never per row: the per-row work stays inside the
hook's tensor ops. Hooks left None are not called. At one insertion point hooks run in registration order;
every hook leaves the rows of other adapters bit-identical, so the order matters only to an adapter that
held two kinds' weights (no format reads one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..registry import Registry

Adapter = Any  # an adapters.model.Adapter (not imported: model.py imports this module)
Mover = Callable[[Any], Any]  # a tensor (or None, or a float) -> the same moved to the target device/dtype


@dataclass(frozen=True)
class Kind:
    name: str  # Adapter.kind and the listing's "kind"
    # Adapter attributes holding its weights: site tables {key: site}, per-layer dicts, or one tensor
    weights: tuple[str, ...]
    tensors: Callable[[Adapter], Iterator[torch.Tensor]]  # every tensor it holds (parameters, bytes, training)
    move: Callable[[Adapter, Mover], dict[str, Any]]  # its attributes (weights and settings) with tensors moved
    # Hooks, each (batch, ...) where batch is the AdapterBatch (its segments, sites[name], rows(), per_segment()):
    linear_input: Callable | None = None  # (batch, x, key) -> x, before a linear layer (IA3 input scales)
    linear_output: Callable | None = None  # (batch, x, y, module, key) -> y, after it (LoRA, bias, IA3 outputs)
    norm_bias: Callable | None = None  # (batch, y, old_bias, key) -> y, after a LayerNorm (bias replacement)
    sublayer: Callable | None = None  # (batch, h, inp, norm, key, pretrained) -> y or None (bottleneck)
    prefix: Callable | None = None  # (batch, layer, like) -> RowPrefix or None (attention prefix)
    word_embeddings: Callable | None = None  # (batch, words) -> words (prompt tokens)
    # Positions a row takes before its text (prompt tokens) and how far its position ids move (a PEFT prefix):
    virtual_tokens: Callable[[Adapter], int] | None = None
    position_shift: Callable[[Adapter], int] | None = None

    def sites(self, adapter: Adapter) -> set:
        """The keys (layer, site) or layers where this adapter uses the kind ({None} for a whole-adapter tensor
        such as a prompt, which has no site of its own)."""
        out: set = set()
        for attr in self.weights:
            value = getattr(adapter, attr)
            if isinstance(value, dict):
                out.update(value)
            elif value is not None:
                out.add(None)
        return out

    def present(self, adapter: Adapter) -> bool:
        return bool(self.sites(adapter))


_HOOKS: dict[str, tuple[Kind, ...]] = {}  # hook name -> the kinds that define it, in registration order
REGISTRY: Registry[Kind] = Registry("adapter kind", on_change=_HOOKS.clear)
register, get, names = REGISTRY.register, REGISTRY.get, REGISTRY.names


def all_kinds() -> tuple[Kind, ...]:
    return tuple(REGISTRY.values())


def with_hook(hook: str) -> tuple[Kind, ...]:
    """The registered kinds that define `hook` (a Kind field name), cached: `Adapter` asks per row."""
    if hook not in _HOOKS:
        _HOOKS[hook] = tuple(k for k in REGISTRY.values() if getattr(k, hook) is not None)
    return _HOOKS[hook]
