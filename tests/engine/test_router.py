"""The router cuts a request into work items that each fit a batch by rows and by padded tokens."""

from __future__ import annotations

import pytest

from adapterserve.engine.router import Router
from adapterserve.engine.tokenize import Encoded


def rows_of(lengths):
    return [Encoded(list(range(n)), None) for n in lengths]


def router(max_batch_size, max_batch_tokens):
    r = Router.__new__(Router)  # only the cutting is under test: no backbone, pool or batcher needed
    r.max_batch_size, r.max_batch_tokens = max_batch_size, max_batch_tokens
    return r


@pytest.mark.parametrize(
    "lengths,size,tokens",
    [
        ([10] * 50, 64, 100),
        ([3, 40, 5, 5, 60, 2, 2, 2, 90, 7], 4, 128),
        ([1] * 200, 16, 10_000),
        ([8, 200, 8], 64, 128),  # a row longer than the budget runs alone
    ],
)
def test_cut_keeps_order_and_bounds(lengths, size, tokens):
    rows = rows_of(lengths)
    chunks = router(size, tokens).cut(rows)
    assert [r for c in chunks for r in c] == rows  # every row once, in order
    for c in chunks:
        assert len(c) <= size
        assert len(c) == 1 or len(c) * max(len(r) for r in c) <= tokens


def test_cut_by_tokens_not_only_rows():
    chunks = router(64, 100).cut(rows_of([10] * 50))
    assert [len(c) for c in chunks] == [10] * 5


def test_cut_counts_prompt_tokens_before_each_row():
    """A prompt-tuning adapter's rows each carry its virtual tokens: 10 + 10 tokens per row, 5 rows per 100."""
    chunks = router(64, 100).cut(rows_of([10] * 50), virtual_tokens=10)
    assert [len(c) for c in chunks] == [5] * 10
