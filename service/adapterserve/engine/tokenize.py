"""Text -> token ids, in a thread (the Rust tokenizer releases the GIL); several requests in one call."""

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


def _encode(tokenizer, texts: list[str], pairs: list[str] | None, offsets: bool, **trunc):
    kwargs = dict(add_special_tokens=True, return_token_type_ids=True, return_attention_mask=False)
    if offsets:
        kwargs.update(return_offsets_mapping=True, return_special_tokens_mask=True)
    return tokenizer(texts, pairs, **kwargs, **trunc) if pairs is not None else tokenizer(texts, **kwargs, **trunc)


def _rows(enc, offsets: bool, lo: int = 0, hi: int | None = None) -> list[Encoded]:
    ids, tt = enc["input_ids"], enc.get("token_type_ids")
    hi = len(ids) if hi is None else hi
    return [
        Encoded(
            input_ids=ids[i],
            token_type_ids=tt[i] if tt is not None else None,
            offsets=[tuple(o) for o in enc["offset_mapping"][i]] if offsets else None,
            special=enc["special_tokens_mask"][i] if offsets else None,
            word_ids=enc.word_ids(i) if offsets and hasattr(enc, "word_ids") else None,
        )
        for i in range(lo, hi)
    ]


def _room(max_length: int, reserved: int) -> int:
    """Positions left for text when the adapter's prompt or prefix takes `reserved` of the backbone's."""
    if max_length - reserved < 3:
        raise BadRequest(
            f"this adapter's prompt/prefix takes {reserved} of the backbone's {max_length} positions: no room for text"
        )
    return max_length - reserved


def _limit(
    tokenizer, rows: list[Encoded], texts, pairs, max_length: int, truncate: bool, offsets: bool, reserved: int = 0
) -> list[Encoded]:
    """Refuse (or, when asked, truncate) rows over the backbone's limit less the adapter's reserved positions."""
    full, max_length = max_length, _room(max_length, reserved)
    too_long = [i for i, r in enumerate(rows) if len(r) > max_length]
    if not too_long:
        return rows
    if not truncate:
        i = too_long[0]
        raise BadRequest(
            f"input {i} has {len(rows[i])} tokens, over the backbone's limit of {max_length}"
            + (f" ({full} positions less {reserved} for this adapter's prompt/prefix tokens)" if reserved else "")
            + '; shorten it or set "truncate": true',
            input=i,
            tokens=len(rows[i]),
            limit=max_length,
        )
    strategy = "longest_first" if pairs is not None else True
    return _rows(_encode(tokenizer, texts, pairs, offsets, truncation=strategy, max_length=max_length), offsets)


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
    _room(max_length, reserved)
    rows = _rows(_encode(tokenizer, texts, pairs, offsets, truncation=False), offsets)
    return _limit(tokenizer, rows, texts, pairs, max_length, truncate, offsets, reserved)


@dataclass(frozen=True)
class TokenizeJob:
    texts: list[str]
    pairs: list[str] | None
    truncate: bool
    offsets: bool
    reserved: int = 0  # the adapter's prompt/prefix positions


def tokenize_many(tokenizer, jobs: list[TokenizeJob], max_length: int) -> list[list[Encoded] | Exception]:
    """Several requests' texts in one tokenizer call per kind (plain, pairs, with offsets): the Rust tokenizer
    encodes a long list in parallel, and one call costs far less than one per request. Each request keeps its
    own answer: its rows, or the BadRequest that its own too-long input earns."""
    out: list[list[Encoded] | Exception] = [[] for _ in jobs]
    kinds: dict[tuple[bool, bool], list[int]] = {}
    for j, job in enumerate(jobs):
        kinds.setdefault((job.pairs is not None, job.offsets), []).append(j)
    for (has_pairs, offsets), members in kinds.items():
        texts = [t for j in members for t in jobs[j].texts]
        pairs = [p for j in members for p in jobs[j].pairs] if has_pairs else None
        enc = _encode(tokenizer, texts, pairs, offsets, truncation=False)
        start = 0
        for j in members:
            job = jobs[j]
            stop = start + len(job.texts)
            try:
                rows = _rows(enc, offsets, start, stop)
                out[j] = _limit(tokenizer, rows, job.texts, job.pairs, max_length, job.truncate, offsets, job.reserved)
            except BadRequest as e:
                out[j] = e
            start = stop
    return out
