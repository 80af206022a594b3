"""Text -> token ids, once per request, in a thread (the Rust tokenizer releases the GIL)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BadRequest


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    token_type_ids: list[int] | None
    offsets: list[tuple[int, int]] | None = None  # character spans, for tagging
    special: list[int] | None = None  # 1 for [CLS]/[SEP]/...
    word_ids: list[int | None] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)


def tokenize(
    tokenizer,
    texts: list[str],
    pairs: list[str] | None,
    max_length: int,
    truncate: bool,
    offsets: bool = False,
    reserved: int = 0,
) -> list[Encoded]:
    """`reserved`: positions the adapter's prompt or prefix takes, which the texts must leave free."""
    full, max_length = max_length, max_length - reserved
    if max_length < 3:
        raise BadRequest(
            f"this adapter's prompt/prefix takes {reserved} of the backbone's {full} positions: no room for text"
        )
    kwargs = dict(add_special_tokens=True, return_token_type_ids=True, return_attention_mask=False)
    if offsets:
        kwargs.update(return_offsets_mapping=True, return_special_tokens_mask=True)
    enc = (
        tokenizer(texts, pairs, truncation=False, **kwargs)
        if pairs is not None
        else tokenizer(texts, truncation=False, **kwargs)
    )
    ids = enc["input_ids"]
    too_long = [i for i, x in enumerate(ids) if len(x) > max_length]
    if too_long and not truncate:
        i = too_long[0]
        raise BadRequest(
            f"input {i} has {len(ids[i])} tokens, over the backbone's limit of {max_length}"
            + (f" ({full} positions less {reserved} for this adapter's prompt/prefix tokens)" if reserved else "")
            + '; shorten it or set "truncate": true',
            input=i,
            tokens=len(ids[i]),
            limit=max_length,
        )
    if too_long:
        strategy = "longest_first" if pairs is not None else True
        enc = (
            tokenizer(texts, pairs, truncation=strategy, max_length=max_length, **kwargs)
            if pairs is not None
            else tokenizer(texts, truncation=True, max_length=max_length, **kwargs)
        )
        ids = enc["input_ids"]
    tt = enc.get("token_type_ids")
    out = []
    for i, row in enumerate(ids):
        out.append(
            Encoded(
                input_ids=row,
                token_type_ids=tt[i] if tt is not None else None,
                offsets=[tuple(o) for o in enc["offset_mapping"][i]] if offsets else None,
                special=enc["special_tokens_mask"][i] if offsets else None,
                word_ids=enc.word_ids(i) if offsets and hasattr(enc, "word_ids") else None,
            )
        )
    return out
