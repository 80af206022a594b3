import pytest
import torch

from adapterserve.engine.postprocess import rank_labels, tag
from adapterserve.engine.tokenize import tokenize

from ..conftest import TINY


def test_rank_labels_softmax_sigmoid_and_raw():
    logits = torch.tensor([0.0, 2.0, 1.0])
    out = rank_labels(logits, ["a", "b", "c"], "classification", None)
    assert [x["label"] for x in out] == ["b", "c", "a"]
    assert abs(sum(x["score"] for x in out) - 1) < 1e-6
    raw = rank_labels(logits, ["a", "b", "c"], "classification", 1, "none")
    assert raw == [{"label": "b", "score": 2.0}]
    sig = rank_labels(torch.tensor([0.0]), ["x"], "multilabel", None)
    assert sig[0]["score"] == 0.5
    forced = rank_labels(logits, ["a", "b", "c"], "classification", None, "sigmoid")
    assert [x["score"] for x in forced] == pytest.approx(torch.sigmoid(torch.tensor([2.0, 1.0, 0.0])).tolist())


LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "MISC"]
TEXTS = ["Angela Merkel visited Paris and Saarbrücken yesterday", "xyzzyplugh Johannesburg, hmm.", "a"]


@pytest.fixture(scope="module")
def pipeline():
    """transformers' own TokenClassificationPipeline on the tiny BERT: its postprocess is the reference."""
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification, TokenClassificationPipeline

    tokenizer = AutoTokenizer.from_pretrained(str(TINY))
    config = BertConfig.from_pretrained(str(TINY), id2label=dict(enumerate(LABELS)))
    return TokenClassificationPipeline(model=BertForTokenClassification(config), tokenizer=tokenizer)


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
@pytest.mark.parametrize("ignore", [None, [], ["O", "MISC"]])
def test_tagging_matches_the_transformers_pipeline(pipeline, strategy, ignore):
    from transformers.pipelines.token_classification import AggregationStrategy

    tokenizer = pipeline.tokenizer
    gen = torch.Generator().manual_seed(0)
    for text in TEXTS:
        (enc,) = tokenize(tokenizer, [text], None, 128, True, offsets=True)
        # Sharp random logits, so labels form spans and words disagree between their pieces.
        logits = torch.randn(len(enc), len(LABELS), generator=gen) * 3
        ref = pipeline.postprocess(
            [
                {
                    "logits": logits[None],
                    "sentence": text,
                    "input_ids": torch.tensor([enc.input_ids]),
                    "offset_mapping": torch.tensor([enc.offsets]),
                    "special_tokens_mask": torch.tensor([enc.special]),
                }
            ],
            AggregationStrategy(strategy),
            ignore,
        )
        ours = tag(text, enc, logits, LABELS, tokenizer, strategy, ["O"] if ignore is None else ignore)
        key = "entity" if strategy == "none" else "entity_group"
        assert [(e[key], e["word"], e["start"], e["end"]) for e in ours] == [
            (r[key], r["word"], r["start"], r["end"]) for r in ref
        ]
        assert [e["score"] for e in ours] == pytest.approx([float(r["score"]) for r in ref], rel=1e-5)
        for e in ours:
            assert e["label"] == e[key]
            if strategy != "none":
                assert e["text"] == text[e["start"] : e["end"]]
