"""Fan-out (/classify?adapter=a,b,c) and ensembles (ensemble.json): answers, limits and 4xx."""

from __future__ import annotations

import json

import pytest

from ..conftest import GOLDEN
from .conftest import golden_files

TEXTS = ["I love it", "This is the worst film I have seen in years.", "meh"]


def _classify(client, adapter, **extra):
    r = client.post(f"/classify?adapter={adapter}", json={"inputs": TEXTS, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def _close(a, b, tol=1e-5):
    return [[x["label"] for x in row] for row in a] == [[x["label"] for x in row] for row in b] and all(
        abs(x["score"] - y["score"]) <= tol for ra, rb in zip(a, b) for x, y in zip(ra, rb)
    )


def test_fanout_answers_each_name_as_a_single_call_would(client):
    both = client.post("/classify?adapter=sentiment,lora,multi", json={"inputs": TEXTS, "top_k": 2})
    assert both.status_code == 200, both.text
    body = both.json()
    assert list(body) == ["sentiment", "lora", "multi"]
    for name in body:
        assert _close(body[name], _classify(client, name, top_k=2)), name
    assert both.headers["X-Adapter-Version"].count("=") == 3


def test_fanout_unknown_names_are_one_404_naming_them(client):
    r = client.post("/classify?adapter=sentiment,nope,gone", json={"inputs": "x"})
    assert r.status_code == 404, r.text
    assert "nope" in r.text and "gone" in r.text


@pytest.mark.parametrize(
    "names,status,fragment",
    [
        (",".join(f"a{i}" for i in range(9)), 413, "limit is 8"),
        ("sentiment,sentiment", 422, "once"),
        ("sentiment,", 422, "adapter"),
        ("sentiment," + "a" * 129, 404, "at most 128 characters"),
        ("sentiment,ner", 422, "/tag"),
    ],
)
def test_fanout_bad_requests(client, names, status, fragment):
    r = client.post("/classify", params={"adapter": names}, json={"inputs": "x"})
    assert r.status_code == status, r.text
    assert fragment in r.text


# ---- ensembles -------------------------------------------------------------------------------------------
def _upload(client, admin, name, spec: dict | str):
    text = spec if isinstance(spec, str) else json.dumps(spec)
    files = [("files", ("ensemble.json", text.encode()))]
    return client.put(f"/admin/adapters/{name}", files=files, headers=admin)


@pytest.fixture
def ens_client(client, admin):
    for name, case in (("sentiment2", "ah_double_seq_bn"), ("multi2", "ah_multilabel")):
        r = client.put(f"/admin/adapters/{name}", files=golden_files(case), headers=admin)
        assert r.status_code == 201, r.text
    return client


def test_mean_ensemble_is_the_weighted_mean_of_member_probabilities(ens_client, admin):
    r = _upload(ens_client, admin, "ens", {"members": ["sentiment", "sentiment2"], "weights": [3, 1]})
    assert r.status_code == 201, r.text
    got = _classify(ens_client, "ens")
    a, b = _classify(ens_client, "sentiment"), _classify(ens_client, "sentiment2")
    for row, ra, rb in zip(got, a, b):
        pa, pb = ({x["label"]: x["score"] for x in r_} for r_ in (ra, rb))
        want = {k: 0.75 * pa[k] + 0.25 * pb[k] for k in pa}
        assert [x["label"] for x in row] == sorted(want, key=want.get, reverse=True)
        assert all(abs(x["score"] - want[x["label"]]) < 1e-5 for x in row)


@pytest.mark.parametrize("weights", [[1, 2], [1, 1]])
def test_vote_ensemble_takes_the_weighted_majority_ties_to_the_higher_mean(ens_client, admin, weights):
    r = _upload(
        ens_client, admin, "voters", {"members": ["sentiment", "sentiment2"], "combine": "vote", "weights": weights}
    )
    assert r.status_code == 201, r.text
    got = _classify(ens_client, "voters")
    w = [x / sum(weights) for x in weights]
    for row, ra, rb in zip(got, _classify(ens_client, "sentiment"), _classify(ens_client, "sentiment2")):
        votes = {}
        for wi, ranked in zip(w, (ra, rb)):
            votes[ranked[0]["label"]] = votes.get(ranked[0]["label"], 0) + wi
        pa, pb = ({x["label"]: x["score"] for x in r_} for r_ in (ra, rb))
        mean = {k: w[0] * pa[k] + w[1] * pb[k] for k in pa}
        want = max(mean, key=lambda k: (votes.get(k, 0), mean[k]))
        assert row[0]["label"] == want and abs(row[0]["score"] - votes[want]) < 1e-6
        assert len(row) == 3


def test_fanout_can_name_an_ensemble(ens_client, admin):
    assert _upload(ens_client, admin, "ens", {"members": ["sentiment", "sentiment2"]}).status_code == 201
    body = ens_client.post("/classify?adapter=ens,sentiment", json={"inputs": TEXTS}).json()
    assert _close(body["ens"], _classify(ens_client, "ens"))
    assert _close(body["sentiment"], _classify(ens_client, "sentiment"))


@pytest.mark.parametrize(
    "spec,fragment",
    [
        ({"members": ["sentiment", "lora"]}, "labels"),  # LABEL_0.. vs negative/neutral/positive
        ({"members": ["sentiment", "multi"]}, "multilabel"),
        ({"members": ["multi", "multi2"], "combine": "vote"}, "'vote' needs single-label"),
        ({"members": ["sentiment", "ner"]}, "tagging"),
        ({"members": ["sentiment", "nope"]}, "nope"),
        ({"members": ["sentiment"]}, "2 to"),
        ({"members": ["sentiment", "sentiment2"], "combine": "max"}, "combine"),
        ({"members": ["sentiment", "sentiment2"], "weights": [1]}, "weights"),
        ({"members": ["sentiment", "sentiment2"], "weights": [-1, 2]}, "weights"),
        ({"members": ["sentiment", "sentiment2"], "extra": 1}, "extra is not a key"),
        ("{not json", "JSON"),
    ],
)
def test_bad_ensembles_are_refused_and_nothing_changes(ens_client, admin, spec, fragment):
    assert _upload(ens_client, admin, "ens", {"members": ["sentiment", "sentiment2"]}).status_code == 201
    before = _classify(ens_client, "ens")
    r = _upload(ens_client, admin, "ens", spec)
    assert 400 <= r.status_code < 500, r.text
    assert fragment in r.text
    assert _close(_classify(ens_client, "ens"), before)  # the previous version keeps serving


def test_deleted_member_is_a_409_naming_it_until_it_returns(ens_client, admin):
    assert _upload(ens_client, admin, "ens", {"members": ["sentiment", "sentiment2"]}).status_code == 201
    assert ens_client.delete("/admin/adapters/sentiment2", headers=admin).status_code == 200
    r = ens_client.post("/classify?adapter=ens", json={"inputs": "x"})
    assert r.status_code == 409 and "sentiment2" in r.text, r.text
    ens_client.put("/admin/adapters/sentiment2", files=golden_files("ah_double_seq_bn"), headers=admin)
    assert ens_client.post("/classify?adapter=ens", json={"inputs": "x"}).status_code == 200


def test_member_changing_labels_is_a_409(ens_client, admin):
    assert _upload(ens_client, admin, "ens", {"members": ["sentiment", "sentiment2"]}).status_code == 201
    files = golden_files("ah_double_seq_bn") + [("labels", (None, "a,b,c"))]
    assert ens_client.put("/admin/adapters/sentiment2", files=files, headers=admin).status_code == 201
    r = ens_client.post("/classify?adapter=ens", json={"inputs": "x"})
    assert r.status_code == 409 and "labels" in r.text, r.text


def test_ensemble_versions_and_rollback(ens_client, admin):
    v1 = _upload(ens_client, admin, "ens", {"members": ["sentiment", "sentiment2"], "weights": [1, 0]}).json()
    v2 = _upload(ens_client, admin, "ens", {"members": ["sentiment", "sentiment2"], "weights": [0, 1]}).json()
    assert v1["version"] != v2["version"]
    assert _close(_classify(ens_client, "ens"), _classify(ens_client, "sentiment2"))
    r = ens_client.post("/admin/adapters/ens/rollback", json={}, headers=admin)
    assert r.status_code == 200 and r.json()["version"] == v1["version"], r.text
    assert _close(_classify(ens_client, "ens"), _classify(ens_client, "sentiment"))


def test_listing_shows_ensembles_with_task_and_members(ens_client, admin):
    assert _upload(ens_client, admin, "ens", {"members": ["sentiment", "sentiment2"]}).status_code == 201
    info = ens_client.get("/adapters/ens").json()
    assert (info["kind"], info["task"], info["members"]) == ("ensemble", "classification", ["sentiment", "sentiment2"])
    assert info["labels"] == ["negative", "neutral", "positive"]
    listed = {a["name"]: a for a in ens_client.get("/adapters").json()["adapters"]}
    assert listed["ens"]["kind"] == "ensemble"


def test_ensemble_on_other_routes_and_raw_scores(ens_client, admin):
    assert _upload(ens_client, admin, "ens", {"members": ["sentiment", "sentiment2"]}).status_code == 201
    r = ens_client.post("/tag?adapter=ens", json={"inputs": "x"})
    assert r.status_code == 422 and "/classify" in r.text, r.text
    r = ens_client.post("/classify?adapter=ens", json={"inputs": "x", "raw_scores": True})
    assert r.status_code == 422 and "raw_scores" in r.text, r.text


def test_golden_dir_present():
    assert (GOLDEN / "ah_double_seq_bn").is_dir()
