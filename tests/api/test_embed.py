import pytest
import torch


def test_embed_shapes_and_openai_format(client):
    r = client.post("/embed", json={"inputs": ["hello", "a longer sentence here"]})
    assert r.status_code == 200, r.text
    vecs = r.json()
    assert len(vecs) == 2 and len(vecs[0]) == 32
    o = client.post("/v1/embeddings", json={"input": "hello", "model": "x"})
    assert o.status_code == 200
    body = o.json()
    assert body["object"] == "list" and body["data"][0]["index"] == 0
    assert torch.allclose(torch.tensor(body["data"][0]["embedding"]), torch.tensor(vecs[0]), atol=1e-5)
    assert body["usage"]["prompt_tokens"] > 0


def test_embed_bad_input(client):
    assert client.post("/embed", json={"inputs": []}).status_code == 422
    assert client.post("/v1/embeddings", json={"input": []}).status_code == 422
    assert client.post("/v1/embeddings", json={}).status_code == 422


@pytest.mark.minilm
def test_embeddings_match_sentence_transformers(minilm_backbone):
    from sentence_transformers import SentenceTransformer

    from adapterserve.engine.runner import run_rows
    from adapterserve.engine.tokenize import tokenize
    from adapterserve.settings import default_backbone

    texts = ["I love it", "Self-driving cars are the future of transport, or so they say.", "meh"]
    st = SentenceTransformer(default_backbone(), device="cpu")
    want = st.encode(texts, convert_to_tensor=True, normalize_embeddings=False)
    rows = tokenize(minilm_backbone.tokenizer, texts, None, minilm_backbone.info.max_length, True)
    got, _ = run_rows(minilm_backbone, rows, [None] * len(rows), [False] * len(rows))
    assert torch.allclose(torch.stack(got), want.cpu(), atol=1e-5)
    assert abs(torch.stack(got).norm(dim=-1) - 1).max() < 1e-5  # the checkpoint's Normalize module
