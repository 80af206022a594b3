"""A sample of the loader fuzz (tests/formats/mutate.py) through the admin upload: every mutated folder gets
201 or a 4xx with a message, and after a refusal the previous version keeps serving the same answers."""

from __future__ import annotations

import random

from ..formats.mutate import copy_case, mutations
from .conftest import TOKEN

SEED = 7
SAMPLE = 24  # per golden case; the full set runs against the loader directly in tests/formats/test_fuzz.py


def _files(folder):
    return [("files", (p.name, p.read_bytes())) for p in sorted(folder.iterdir()) if p.is_file()]


def _classify(client, name):
    return client.post(f"/classify?adapter={name}", json={"inputs": ["one text", "another"], "raw_scores": True})


def test_mutated_uploads_get_4xx_and_the_previous_version_keeps_serving(client, tmp_path):
    admin = {"Authorization": f"Bearer {TOKEN}"}
    statuses: dict[int, int] = {}
    for name, case in (("sentiment", "ah_seq_bn"), ("lora", "peft_lora_list")):
        muts = mutations(case, SEED)
        for i, (label, apply) in enumerate(random.Random(SEED).sample(muts, SAMPLE)):
            before = _classify(client, name)
            assert before.status_code == 200, before.text
            folder = copy_case(case, tmp_path / f"{name}-{i}")
            apply(folder)
            r = client.put(f"/admin/adapters/{name}", files=_files(folder), headers=admin)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            assert r.status_code == 201 or 400 <= r.status_code < 500, (label, r.status_code, r.text)
            assert r.json().get("message") or r.status_code == 201, (label, r.text)
            after = _classify(client, name)
            assert after.status_code == 200, (label, after.text)
            if r.status_code != 201:
                assert after.headers["X-Adapter-Version"] == before.headers["X-Adapter-Version"], label
                assert after.json() == before.json(), label
    assert statuses.get(422, 0) > SAMPLE // 2, statuses  # most mutations are refusals
    assert client.get("/adapters").status_code == 200
