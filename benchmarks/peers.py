"""Peers in the same run: infinity-emb serving the same backbone at /embeddings, against our /v1/embeddings.

infinity-emb lives in its own venv (it pins other transformers/optimum versions than ours), built once:

    python -m benchmarks.peers --setup      # ~/.cache/adapterserve/peer-envs/infinity, and the ONNX exports

Its engines: torch on the backbone folder; optimum on an fp32 ONNX export of it (`optimum-cli export onnx
--library-name transformers`) and on an int8 one (`optimum-cli onnxruntime quantize --avx512_vnni`, when the
CPU has AVX512-VNNI). Every server gets the same texts, load and CPU threads (OMP_NUM_THREADS); the embeddings
of each are compared with ours (cosine, on the first texts).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

from . import load as L
from .server import ServerProcess, free_port

PEER_ROOT = Path(os.environ.get("ADAPTERSERVE_PEER_ENVS") or Path.home() / ".cache" / "adapterserve" / "peer-envs")
INFINITY = PEER_ROOT / "infinity"
TORCH_PIN = "torch==2.13.0"  # the CPU build, as the Makefile pins it: an unpinned torch pulls a CUDA build
PEER_MODEL = "minilm"  # the name infinity-emb serves the model under


def infinity_python() -> Path | None:
    py = INFINITY / "bin" / "python"
    return py if py.is_file() else None


def has_vnni() -> bool:
    try:
        return "avx512_vnni" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def setup() -> Path:
    """The side venv (torch first, so pip keeps the CPU build)."""
    if infinity_python() is None:
        subprocess.run([sys.executable, "-m", "venv", str(INFINITY)], check=True)
        pip = [str(INFINITY / "bin" / "pip"), "install", "-q"]
        subprocess.run([*pip, TORCH_PIN], check=True)
        subprocess.run([*pip, "infinity-emb[server,optimum,torch]", TORCH_PIN], check=True)
    return INFINITY


def exports(backbone: str) -> dict[str, Path]:
    """The fp32 and (with VNNI) int8 ONNX exports of the backbone, made once, with its tokenizer and pooling."""
    root = PEER_ROOT / "models" / Path(backbone).name
    cli = str(INFINITY / "bin" / "optimum-cli")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = {"fp32": root / "onnx-fp32"}
    if not (out["fp32"] / "model.onnx").is_file():
        subprocess.run(
            [cli, "export", "onnx", "--model", backbone, "--library-name", "transformers", "--task",
             "feature-extraction", str(out["fp32"])],
            check=True, env=env,
        )  # fmt: skip
    if has_vnni():
        out["int8"] = root / "onnx-int8"
        if not any(out["int8"].glob("*.onnx")):
            subprocess.run(
                [cli, "onnxruntime", "quantize", "--onnx_model", str(out["fp32"]), "--avx512_vnni", "-o",
                 str(out["int8"])],
                check=True, env=env,
            )  # fmt: skip
    for folder in out.values():
        for f in Path(backbone).iterdir():  # tokenizer, config and the sentence-transformers pooling
            dest = folder / f.name
            if dest.exists() or f.suffix in (".safetensors", ".bin", ".onnx"):
                continue
            (shutil.copytree if f.is_dir() else shutil.copy2)(f, dest)
        for f in folder.iterdir():  # `optimum-cli` also copies the fp32 model into the int8 folder: keep int8
            if folder.name == "onnx-int8" and f.name == "model.onnx":
                f.unlink()
    return out


def infinity_server(model: str, engine: str, threads: int, logs: Path, name: str, pooling: str) -> ServerProcess:
    """infinity-emb v2 on `model`. The optimum engine runs in the model folder as "." (given an absolute folder it
    passes optimum an absolute file name, which optimum refuses), with its own hub cache (where it keeps the graph
    it optimizes, named after the model id: "." would be shared by the fp32 and int8 folders). The pooling is
    given: its optimum engine's "auto" pools the CLS token, not what the checkpoint says (cosine 0.51 to ours)."""
    port = free_port()
    local = engine == "optimum"
    args = ["v2", "--model-id", "." if local else model, "--served-model-name", PEER_MODEL, "--engine", engine,
            "--device", "cpu", "--port", str(port), "--batch-size", "32", "--pooling-method", pooling]  # fmt: skip
    cache = str(logs / f"hf-cache-{name}")
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "INFINITY_ANONYMOUS_USAGE_STATS": "0",
           "HF_HUB_CACHE": cache, "HUGGINGFACE_HUB_CACHE": cache}  # fmt: skip
    return ServerProcess(
        args, env, port, logs / f"infinity-{name}.log", name=f"infinity ({name})",
        executable=str(INFINITY / "bin" / "infinity_emb"), cwd=model if local else "",
    )  # fmt: skip


def embedding_requests(texts: list[str], n: int, path: str, model: str) -> list[L.Request]:
    return [L.Request(path, json.dumps({"model": model, "input": [texts[i % len(texts)]]}).encode()) for i in range(n)]


def embeddings(url: str, path: str, model: str, texts: list[str]) -> list[list[float]]:
    with httpx.Client(timeout=120) as c:
        r = c.post(url + path, json={"model": model, "input": texts})
        r.raise_for_status()
        return [d["embedding"] for d in sorted(r.json()["data"], key=lambda d: d["index"])]


def cosines(a: list[list[float]], b: list[list[float]]) -> dict:
    import torch

    x, y = torch.tensor(a), torch.tensor(b)
    c = torch.nn.functional.cosine_similarity(x, y, dim=-1)
    return {"mean": round(float(c.mean()), 5), "min": round(float(c.min()), 5)}


def peer_phase(server: ServerProcess, path: str, model: str, texts: list[str], cfg, ref=None) -> dict:
    """Closed loop, one text per request, on a started server; its embeddings of the first texts kept."""
    reqs = embedding_requests(texts, 20000, path, model)
    got = embeddings(server.url, path, model, texts[:64])
    server.sampler.reset()
    # each server at its best: the best of a few windows (infinity-emb's optimum engine moved between 108 and
    # 144 req/s from one window to another on the same machine, ours by a few percent)
    windows = [
        L.run(
            L.closed_loop(
                server.url, reqs, cfg.peer_concurrency, cfg.duration, cfg.warmup, server_pid=server.pid, scrape=False
            )
        )
        for _ in range(cfg.peer_windows)
    ]
    res = max(windows, key=lambda r: r.summary()["req_per_s"])
    rec = {
        **res.summary(),
        "windows_req_per_s": [round(r.summary()["req_per_s"], 1) for r in windows],
        "client_cpu_share": round(res.client_cpu_s / res.duration_s, 3),
        "server_cpu_cores": round(res.server_cpu_s / res.duration_s, 3),
        "rss_peak": server.sampler.peak if server.sampler else 0,
        "ready_after_s": round(server.ready_after_s, 1),
    }
    if ref is not None:
        rec["cosine_to_ours_fp32"] = cosines(got, ref)
    return rec, got


def peers_suite(cfg, backbone: str, texts: list[str], logs: Path, ours, threads: int, log=print) -> dict:
    """Our /v1/embeddings on each runtime, then infinity-emb's engines, on the same texts and load.

    `ours(runtime)` makes our server (run.py's service_server with ADAPTERSERVE_RUNTIME)."""
    out: dict = {"threads": threads, "concurrency": cfg.peer_concurrency, "servers": {}}
    ref = None
    for runtime in cfg.peer_runtimes:
        server = ours(runtime)
        server.start(timeout=900)
        try:
            rec, got = peer_phase(server, "/v1/embeddings", "ours", texts, cfg, ref)
        finally:
            server.stop()
        ref = ref or got
        out["servers"][f"adapterserve ({runtime})"] = rec
        log(
            f"peers: adapterserve {runtime}: {rec['req_per_s']:.1f} req/s, p50 {rec['p50_ms']:.0f} ms, "
            f"errors {rec['errors'] or 0}"
        )
    if infinity_python() is None:
        out["skipped"] = f"infinity-emb is not installed in {INFINITY} (python -m benchmarks.peers --setup)"
        log("peers: " + out["skipped"])
        return out
    models = {"torch": backbone}
    try:
        models.update({f"optimum {k}": str(v) for k, v in exports(backbone).items()})
    except (subprocess.CalledProcessError, OSError) as e:
        out["export_error"] = str(e)
    from adapterserve.engine.backbone import sentence_pooling

    pooling = sentence_pooling(backbone)[0]
    pooling = pooling if pooling in ("mean", "cls") else "auto"  # infinity-emb has no max pooling
    for name, model in models.items():
        engine = "torch" if name == "torch" else "optimum"
        server = infinity_server(model, engine, threads, logs, name.replace(" ", "-"), pooling)
        try:
            server.start(timeout=900, ready_path="/health")
            rec, _ = peer_phase(server, "/embeddings", PEER_MODEL, texts, cfg, ref)
        except RuntimeError as e:
            out["servers"][f"infinity ({name})"] = {"error": str(e)[-800:]}
            continue
        finally:
            server.stop()
        out["servers"][f"infinity ({name})"] = rec
        log(f"peers: infinity {name}: {rec['req_per_s']:.1f} req/s, cosine to ours {rec.get('cosine_to_ours_fp32')}")
    return out


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__)
    p.add_argument("--setup", action="store_true", help="build the side venv and the ONNX exports")
    p.add_argument("--backbone", default=None)
    args = p.parse_args(argv)
    if args.setup:
        from adapterserve.settings import default_backbone

        setup()
        print(json.dumps({k: str(v) for k, v in exports(args.backbone or default_backbone()).items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def render(p: dict) -> list[str]:
    """The peers table for docs/benchmarks.md."""
    out = [
        f"One text per request, {p['concurrency']} connections, closed loop, {p['threads']} CPU threads on every side "
        "(OMP_NUM_THREADS for infinity-emb, which batches up to 32; our 2 inference workers x 1). Each server is "
        "measured in several windows and its best counts (`req/s of each window`). Cosine: each server's "
        "embeddings of the first 64 texts against our torch fp32 ones.",
        "",
        "| server | req/s | req/s of each window | p50 ms | p99 ms | cosine to fp32 (mean / min) | server CPU (cores) "
        "| client CPU (cores) | peak RSS |",
        "|---|---:|---|---:|---:|---|---:|---:|---:|",
    ]
    for name, r in p.get("servers", {}).items():
        if "error" in r:
            out.append(f"| {name} | failed: {r['error'][-160:]!r} | | | | | | | |")
            continue
        cos = r.get("cosine_to_ours_fp32")
        c = f"{cos['mean']:.4f} / {cos['min']:.4f}" if cos else "(reference)"
        out.append(
            f"| {name} | {r['req_per_s']:.1f} | {' / '.join(f'{w:.1f}' for w in r.get('windows_req_per_s', []))} | "
            f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {c} | "
            f"{r['server_cpu_cores']:.2f} | {r['client_cpu_share']:.2f} | {r['rss_peak'] / 1e6:.0f} MB |"
        )
    if p.get("skipped"):
        out += ["", p["skipped"]]
    return out
