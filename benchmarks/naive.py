"""The naive baseline server: one full HF model per task, one forward per request, no batching.

`python -m benchmarks.naive --port P --backbone DIR --tasks N [--device cpu|cuda]` loads N independent
`BertForSequenceClassification` copies of the backbone (3 labels, head as from_pretrained initialises it),
each wrapped in a transformers text-classification pipeline, and serves POST /classify?adapter=task-K with the
same body and answer shape as adapterserve. The endpoint is a plain `def`, so FastAPI runs each request in
its worker-thread pool: what a straightforward implementation does (`--serial` adds a lock so that only one
forward runs at a time, each with all of torch's intra-op threads).
"""

from __future__ import annotations

import argparse
import logging
import os


def build_app(backbone: str, tasks: int, device: str = "cpu", serial: bool = False):
    import threading

    import torch
    from fastapi import FastAPI, HTTPException, Query
    from transformers import AutoTokenizer, BertForSequenceClassification, pipeline
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    pipes = {}
    for k in range(tasks):
        torch.manual_seed(k)
        model = BertForSequenceClassification.from_pretrained(
            backbone,
            num_labels=3,
            id2label={0: "negative", 1: "neutral", 2: "positive"},
            label2id={"negative": 0, "neutral": 1, "positive": 2},
        )
        model.eval()
        if device == "cuda":
            model = model.half()
        tok = AutoTokenizer.from_pretrained(backbone)
        pipes[f"task-{k}"] = pipeline("text-classification", model=model, tokenizer=tok, device=device)
    # A first forward per pipeline so the first request does not pay for lazy initialisation.
    for p in pipes.values():
        p("warm up", top_k=None)

    app = FastAPI(title="naive baseline")
    lock = threading.Lock() if serial else None

    @app.get("/health/ready")
    def ready():
        return {"status": "ready", "tasks": len(pipes)}

    @app.post("/classify")
    def classify(body: dict, adapter: str = Query(...)):
        pipe = pipes.get(adapter)
        if pipe is None:
            raise HTTPException(404, f"unknown task {adapter!r}")
        inputs = body["inputs"]
        texts = [inputs] if isinstance(inputs, str) else inputs
        out = []
        for t in texts:  # one forward per input: no batching
            if lock is not None:
                with lock:
                    scores = pipe(t, top_k=None, truncation=True)
            else:
                scores = pipe(t, top_k=None, truncation=True)
            out.append([{"label": s["label"], "score": float(s["score"])} for s in scores])
        return out

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--tasks", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--serial",
        action="store_true",
        help="one forward at a time (a lock around the pipeline) instead of concurrent forwards",
    )
    args = parser.parse_args()
    import uvicorn

    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "WARNING"))
    app = build_app(args.backbone, args.tasks, args.device, args.serial)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
