"""The real openai SDK against a real server: embeddings in both encodings, dimensions, and the model list."""

import httpx
import numpy as np
import pytest

from .conftest import PUBLISHED

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(live_server):
    from openai import OpenAI

    return OpenAI(base_url=f"{live_server.url}/v1", api_key="unused", max_retries=0)


def _ours(live_server, texts):
    return np.array(httpx.post(f"{live_server.url}/embed", json={"inputs": texts}).json(), dtype=np.float32)


def test_embeddings_default_encoding_is_base64_and_decodes_exactly(live_server, client):
    texts = ["I love it", "a second, longer text about something else"]
    raw = client.embeddings.with_raw_response.create(model="any", input=texts)  # the SDK's default: base64
    sent = raw.http_request.read()
    assert b'"encoding_format":"base64"' in sent.replace(b" ", b"")
    assert isinstance(raw.http_response.json()["data"][0]["embedding"], str)
    got = client.embeddings.create(model="any", input=texts, user="someone")
    want = _ours(live_server, texts)
    assert np.array([d.embedding for d in got.data], dtype=np.float32) == pytest.approx(want, abs=1e-6)
    assert [d.index for d in got.data] == [0, 1]
    assert got.usage.prompt_tokens > 0


def test_embeddings_float(live_server, client):
    got = client.embeddings.create(model="any", input="I love it", encoding_format="float")
    assert np.array(got.data[0].embedding, dtype=np.float32) == pytest.approx(_ours(live_server, ["I love it"])[0])


def test_dimensions_is_refused_clearly(client):
    import openai

    with pytest.raises(openai.UnprocessableEntityError) as e:
        client.embeddings.create(model="any", input="x", dimensions=8)
    assert "dimensions is not supported" in e.value.response.json()["message"]


def test_models_lists_the_backbone_and_adapters(client):
    models = client.models.list().data
    ids = [m.id for m in models]
    assert set(PUBLISHED) <= set(ids)
    assert len(ids) == len(PUBLISHED) + 1  # and the backbone
    assert all(m.owned_by == "adapterserve" and m.created > 0 and m.object == "model" for m in models)
