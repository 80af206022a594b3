"""`make bench`: an HTTP load generator and baselines for adapterserve (see docs/benchmarks.md).

Modules: corpus (texts), adapters (random AdapterHub adapters), server (subprocess + /metrics),
load (closed/open-loop httpx load), naive (the one-model-per-task baseline server), inproc (the bare
backbone ceiling), prototype (in-process measurements of proposed service changes), report (markdown),
run (the orchestration).
"""
