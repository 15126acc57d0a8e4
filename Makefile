# Every target works on a fresh clone: the venv is (re)built when pyproject.toml changes.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lint test demo bench sample clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check pipeline tests
	$(BIN)/ruff format --check --quiet pipeline tests
	$(BIN)/mypy pipeline

test: lint
	$(BIN)/pytest -q

demo: $(STAMP)
	$(BIN)/signin-risk demo

bench: $(STAMP)
	$(BIN)/signin-risk bench

# Regenerate the bundled demo sample from the generator (tests check they agree).
sample: $(STAMP)
	$(BIN)/python -c "from pipeline.synth import write_sample; write_sample('pipeline/data/sample-signins.ndjson')"

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
