"""Prompt tuning (PEFT): P learned virtual token embeddings stand before a row's text.

PEFT concatenates them in front of the word embeddings and feeds `inputs_embeds`: the virtual tokens take
positions 0..P-1 (the text follows at P..), token type 0, and the attention mask covers them. The runner
leaves P slots in front of such a row (see engine/runner.py); here their word embeddings are replaced.
A sequence head therefore reads position 0, the first virtual token, as PEFT's model does; tagging drops
the virtual positions before its answer.
"""

from __future__ import annotations

import torch

from . import kinds


def insert_prompts(words: torch.Tensor, segments: list) -> torch.Tensor:
    """words [B, T, H]: each prompt row's first P positions become its adapter's prompt."""
    out = words
    for seg in segments:
        prompt = None if seg.adapter is None else seg.adapter.prompt
        if prompt is None:
            continue
        if out is words:
            out = words.clone()
        out[seg.start : seg.stop, : prompt.shape[0]] = prompt.to(words.dtype)
    return out


KIND = kinds.Kind(
    "prompt",
    weights=("prompt",),
    tensors=lambda adapter: iter(() if adapter.prompt is None else (adapter.prompt,)),
    move=lambda adapter, mv: dict(prompt=mv(adapter.prompt)),
    word_embeddings=lambda batch, words: insert_prompts(words, batch.segments),
    virtual_tokens=lambda adapter: 0 if adapter.prompt is None else adapter.prompt.shape[0],
)
