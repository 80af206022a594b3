#!/usr/bin/env python3
"""Does the REFERENCE library load these adapter folders? Runs inside a side environment (ref_envs.sh):
    <env>/bin/python tests/formats/reference_load.py --lib adapters|peft REQUEST.json
REQUEST.json: {"backbone": path, "folders": [{"folder", "task", "num_labels"}, ...]}.
Prints [{"loaded": bool, "error": "Type: message"}, ...] on stdout, one per folder, in order.
tests/formats/test_validation.py drives it; the libraries are never imported by the tests themselves.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
warnings.filterwarnings("ignore")


def load(lib: str, backbone: str, item: dict) -> None:
    import torch

    if lib == "adapters":
        from adapters import AutoAdapterModel

        model = AutoAdapterModel.from_pretrained(backbone, dtype=torch.float32)
        model.load_adapter(item["folder"], with_head=True, set_active=True, use_safetensors=True)
    else:
        from peft import PeftModel
        from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

        cls = AutoModelForTokenClassification if item["task"] == "tagging" else AutoModelForSequenceClassification
        base = cls.from_pretrained(backbone, num_labels=item["num_labels"], dtype=torch.float32)
        PeftModel.from_pretrained(base, item["folder"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", choices=["adapters", "peft"], required=True)
    ap.add_argument("request")
    a = ap.parse_args()
    with open(a.request) as f:
        req = json.load(f)
    import transformers

    transformers.logging.set_verbosity_error()
    out = []
    for item in req["folders"]:
        try:
            load(a.lib, req["backbone"], item)
            out.append({"loaded": True, "error": None})
        except Exception as e:  # any refusal counts: that is what we compare against
            out.append({"loaded": False, "error": f"{type(e).__name__}: {str(e)[:300]}"})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
