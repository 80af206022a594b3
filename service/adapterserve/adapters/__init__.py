"""The adapter math: torch only, no files, no HTTP.

The built-in adapter kinds are registered here, in `_BUILTIN`'s order, which is the order their hooks run
at one insertion point (LoRA's delta before IA3's output scale). Importing any module of this package runs
this first, so the registry is complete wherever an `Adapter` exists. Add a kind: write its module with a
`KIND = kinds.Kind(...)` (see kinds.py and docs/architecture.md) and name it in `_BUILTIN`.
"""

from . import bottleneck, ia3, kinds, lora, prefix, prompt

_BUILTIN = (bottleneck.KIND, lora.KIND, ia3.KIND, prefix.KIND, prompt.KIND)
for _kind in _BUILTIN:
    kinds.register(_kind)
