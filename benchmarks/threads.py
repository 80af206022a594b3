"""`python -m benchmarks.threads`: why only the inference worker may run torch with several CPU threads.

An inference-shaped loop (four 384x384 Linear+GELU layers on 512 tokens) runs on a worker thread, then one
1000x1000 op runs on a helper thread, then the loop runs again. Each case runs in a fresh process, because
the effect lasts for the life of the process (service/adapterserve/engine/threads.py explains it). Cases: the helper
with torch's default threads, and the helper with one thread (what the service does).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time


def _loop(seconds: float = 3.0) -> dict:
    import torch

    layers = [torch.nn.Linear(384, 384) for _ in range(4)]
    x = torch.randn(512, 384)
    n, t, c = 0, time.perf_counter(), time.process_time()
    with torch.inference_mode():
        while time.perf_counter() - t < seconds:
            y = x
            for lin in layers:
                y = torch.nn.functional.gelu(lin(y))
            n += 1
    wall = time.perf_counter() - t
    return {"passes_per_s": round(n / wall, 1), "cores": round((time.process_time() - c) / wall, 2)}


def _case(helper_one_thread: bool) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from adapterserve.engine.threads import compute_threads, one_thread

    worker = ThreadPoolExecutor(1, initializer=compute_threads(torch.get_num_threads()))
    helper = ThreadPoolExecutor(1, initializer=one_thread if helper_one_thread else None)
    before = worker.submit(_loop).result()
    helper.submit(lambda: float((torch.randn(1000, 1000) * 2).sum())).result()
    after = worker.submit(_loop).result()
    return {"threads": torch.get_num_threads(), "before": before, "after": after}


def measure() -> dict:
    out = {}
    for name, flag in (("helper with default threads", "default"), ("helper with one thread", "one")):
        run = subprocess.run(
            [sys.executable, "-m", "benchmarks.threads", "--case", flag], capture_output=True, text=True, check=True
        )
        out[name] = json.loads(run.stdout.strip().splitlines()[-1])
    return out


def render(res: dict) -> list[str]:
    lines = [
        "| helper thread | worker threads | worker passes/s before | after the helper's op | cores before | "
        "cores after |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in res.items():
        lines.append(
            f"| {name} | {r['threads']} | {r['before']['passes_per_s']} | {r['after']['passes_per_s']} | "
            f"{r['before']['cores']} | {r['after']['cores']} |"
        )
    return lines


if __name__ == "__main__":
    if "--case" in sys.argv:
        print(json.dumps(_case(sys.argv[sys.argv.index("--case") + 1] == "one")))
    else:
        print("\n".join(render(measure())))
