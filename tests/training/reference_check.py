#!/usr/bin/env python3
"""Logits of an exported adapter folder computed by the REFERENCE library (not imported by any test).

Runs inside a side virtual environment of tests/fixtures/ref_envs.sh that has the library:
    $(tests/fixtures/ref_envs.sh adapters) tests/training/reference_check.py --lib adapters REQUEST.json
    $(tests/fixtures/ref_envs.sh peft)     tests/training/reference_check.py --lib peft REQUEST.json
REQUEST.json: {"folder", "backbone", "task", "num_labels", "texts": [...]} (tagging: "words": [[...], ...];
qa: "pairs": [[question, context], ...]).
Prints {"logits": [...]} (per text: [num_labels], or [T, num_labels] for tagging, [T, 2] start/end for qa).
PEFT's question-answering wrapper drops token_type_ids, so qa logits come from the merged model, which uses
them (as the service does).
tests/training/test_reference_libraries.py drives it (and builds the environments when missing).
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", choices=["adapters", "peft"], required=True)
    ap.add_argument("request")
    a = ap.parse_args()
    with open(a.request) as f:
        req = json.load(f)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(req["backbone"])
    if req["task"] == "qa":
        pairs = req["pairs"]
        batch = tok([p[0] for p in pairs], [p[1] for p in pairs], padding=True, return_tensors="pt")
    elif req["task"] == "tagging":
        batch = tok(req["words"], is_split_into_words=True, padding=True, return_tensors="pt")
    else:
        batch = tok(req["texts"], padding=True, return_tensors="pt")
    if a.lib == "adapters":
        from adapters import AutoAdapterModel

        model = AutoAdapterModel.from_pretrained(req["backbone"], dtype=torch.float32)
        name = model.load_adapter(req["folder"], with_head=True, set_active=True, use_safetensors=True)
        model.set_active_adapters(name)
    else:
        from peft import PeftModel
        from transformers import (
            AutoModelForQuestionAnswering,
            AutoModelForSequenceClassification,
            AutoModelForTokenClassification,
        )

        if req["task"] == "qa":
            base = AutoModelForQuestionAnswering.from_pretrained(req["backbone"], dtype=torch.float32)
            model = PeftModel.from_pretrained(base, req["folder"]).merge_and_unload()
        else:
            cls = AutoModelForTokenClassification if req["task"] == "tagging" else AutoModelForSequenceClassification
            base = cls.from_pretrained(req["backbone"], num_labels=req["num_labels"], dtype=torch.float32)
            model = PeftModel.from_pretrained(base, req["folder"])
    model.eval()
    with torch.no_grad():
        out = model(**batch)
        if req["task"] == "qa":
            logits = torch.stack([out.start_logits, out.end_logits], dim=-1).float()
        else:
            logits = out.logits.float()
    out = []
    for i in range(logits.shape[0]):
        n = int(batch["attention_mask"][i].sum())
        out.append(logits[i, :n].tolist() if logits.dim() == 3 else logits[i].tolist())
    print(json.dumps({"logits": out}))


if __name__ == "__main__":
    main()
