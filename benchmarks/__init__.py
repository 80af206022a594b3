"""`make bench`: an HTTP load generator and baselines for adapterserve (see docs/benchmarks.md).

Modules: corpus (texts), adapters (random AdapterHub adapters), server (subprocess + /metrics),
load (closed/open-loop load: a raw asyncio HTTP/1.1 client, or httpx), naive (the one-model-per-task
baseline server), inproc (the bare backbone ceiling), prototype (in-process measurements of the adapter paths and a
row-wise prototype),
serve (the real server with interpreter settings, for experiments), report (markdown), run (the orchestration).
"""
