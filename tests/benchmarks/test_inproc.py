"""The bare transformers ceiling: both orders run the same texts, and a run measures whole windows."""

from benchmarks.inproc import WINDOW_BATCHES, hf_ceiling, load_hf, ordered

from ..conftest import TINY


def test_sorted_order_covers_the_same_texts_window_by_window():
    texts = [("x" * (i * 7 % 13)) + str(i) for i in range(64)]
    got = ordered(texts, "sorted", 16)
    assert ordered(texts, "arrival", 16) == texts
    for w in range(0, 64, 16):
        assert sorted(got[w : w + 16]) == sorted(texts[w : w + 16])
        assert [len(t) for t in got[w : w + 16]] == sorted(len(t) for t in texts[w : w + 16])


def test_ceiling_runs_whole_windows_at_the_given_threads():
    model, tok = load_hf(str(TINY))
    texts = [f"text number {i} " * (1 + i % 5) for i in range(4 * WINDOW_BATCHES * 4)]
    for order in ("arrival", "sorted"):
        r = hf_ceiling(model, tok, texts, 4, 0.01, order, threads=1)
        assert r.sequences % (4 * WINDOW_BATCHES) == 0 and r.sequences > 0
        assert r.threads == 1 and 0 <= r.padding_ratio < 1
