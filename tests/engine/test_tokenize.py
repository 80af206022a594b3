"""Several requests in one tokenizer call: each keeps its own rows, limits and errors."""

from adapterserve.engine.tokenize import TokenizeJob, tokenize, tokenize_many
from adapterserve.errors import BadRequest


def test_coalesced_requests_get_what_each_alone_would(tiny_backbone):
    tok, limit = tiny_backbone.tokenizer, 12
    long = "word " * 40
    jobs = [
        TokenizeJob(["hello there", "a b c"], None, False, False),
        TokenizeJob([long], None, False, False),  # too long, no truncation: this request alone is refused
        TokenizeJob([long, "short"], None, True, False),  # truncated
        TokenizeJob(["first half"], ["second half"], False, False),  # a pair
        TokenizeJob(["with offsets here"], None, False, True),
    ]
    out = tokenize_many(tok, jobs, limit)
    assert isinstance(out[1], BadRequest) and "limit of 12" in out[1].message
    for j in (0, 2, 3, 4):
        job = jobs[j]
        alone = tokenize(tok, job.texts, job.pairs, limit, job.truncate, job.offsets)
        assert out[j] == alone, j
    assert max(len(r) for r in out[2]) == limit
    assert out[4][0].offsets is not None and out[3][0].token_type_ids != [0] * len(out[3][0])
