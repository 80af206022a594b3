"""One inference worker with all the CPU threads, or two with half each: rows/s at several pass sizes.

Each case runs in a fresh process (`python -m benchmarks.workers --case W T P S BACKBONE`): W worker threads,
each with T torch threads (as the service sets them up, service/adapterserve/engine/threads.py), run passes of P rows of
similar length through adapterserve.engine.runner.run_rows with one random adapter, for S seconds.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time


def _case(workers: int, threads: int, rows_per_pass: int, seconds: float, backbone_path: str) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    from adapterserve.engine.backbone import load_backbone
    from adapterserve.engine.runner import run_rows
    from adapterserve.engine.threads import compute_threads, one_thread
    from adapterserve.engine.tokenize import tokenize

    from .adapters import AdapterSpec
    from .corpus import load_texts
    from .prototype import load_adapters

    one_thread()  # the main thread only loads; the workers compute
    bb = load_backbone(backbone_path, "cpu")
    texts, _ = load_texts(2048)
    rows = sorted(tokenize(bb.tokenizer, texts, None, bb.info.max_length, True), key=len)
    adapter = load_adapters(1, AdapterSpec(bb.info.hidden_size, bb.info.num_layers), bb)[0]
    done, lock = [], threading.Lock()

    def work(seed: int) -> None:
        rng = random.Random(seed)
        batch = rows[:rows_per_pass]
        run_rows(bb, batch, [adapter] * len(batch), [False] * len(batch))  # warm-up
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            k = rng.randrange(len(rows) - rows_per_pass)
            batch = rows[k : k + rows_per_pass]  # neighbours in length order: a bucketed pass
            run_rows(bb, batch, [adapter] * len(batch), [False] * len(batch))
            n += len(batch)
        with lock:
            done.append((n, time.perf_counter() - t0))

    pool = ThreadPoolExecutor(workers, initializer=compute_threads(threads))
    list(pool.map(work, range(workers)))
    pool.shutdown()
    return {
        "workers": workers,
        "threads": threads,
        "rows_per_pass": rows_per_pass,
        "rows_per_s": round(sum(n for n, _ in done) / max(w for _, w in done), 1),
    }


def measure(backbone_path: str, budget: int, sizes=(1, 4, 16), seconds: float = 8.0) -> list[dict]:
    configs = [(1, budget)] + ([(2, budget // 2)] if budget >= 2 else [])
    out = []
    for p in sizes:
        for w, t in configs:
            run = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.workers",
                    "--case",
                    str(w),
                    str(t),
                    str(p),
                    str(seconds),
                    backbone_path,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            out.append(json.loads(run.stdout.strip().splitlines()[-1]))
    return out


def render(res: list[dict]) -> list[str]:
    lines = ["| rows per pass | workers x torch threads | rows/s | vs 1 worker |", "|---:|---|---:|---:|"]
    base = {r["rows_per_pass"]: r["rows_per_s"] for r in res if r["workers"] == 1}
    for r in res:
        rel = r["rows_per_s"] / base[r["rows_per_pass"]] if base.get(r["rows_per_pass"]) else 0
        lines.append(
            f"| {r['rows_per_pass']} | {r['workers']} x {r['threads']} | {r['rows_per_s']:,.1f} | {rel:.2f}x |"
        )
    return lines


if __name__ == "__main__":
    if "--case" in sys.argv:
        i = sys.argv.index("--case")
        w, t, p, s, path = sys.argv[i + 1 : i + 6]
        print(json.dumps(_case(int(w), int(t), int(p), float(s), path)))
    else:
        from adapterserve.engine.threads import cpu_budget
        from adapterserve.settings import default_backbone

        print("\n".join(render(measure(default_backbone(), cpu_budget()))))
