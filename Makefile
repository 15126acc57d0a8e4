# Every target works on a fresh clone: the venv is (re)built when pyproject.toml changes.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lint peers test demo demo-capture bench sample report-screenshot clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check pipeline tests tools
	$(BIN)/ruff format --check --quiet pipeline tests tools
	$(BIN)/mypy pipeline tools

# Real peers the tests run, from Debian: installed when missing and root, else named.
DEBIAN_PEERS := rsyslog rsyslog-openssl prometheus chromium chromium-driver

peers:
	@missing=""; for pkg in $(DEBIAN_PEERS); do \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    (apt-get install -y -qq --no-install-recommends $$missing >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends $$missing >/dev/null)); \
	  else \
	    echo "make test needs the Debian packages:$$missing (apt-get install$$missing)"; exit 1; \
	  fi; \
	fi

test: lint peers
	$(BIN)/pytest -q

demo: $(STAMP)
	$(BIN)/signin-risk demo $(DEMO_ARGS)

# The README's demo screen: docs/demo.txt and its excerpt, from a real run (tests/test_docs.py).
demo-capture: $(STAMP)
	$(BIN)/python -m tools.democapture

# The benchmarks and the sample generator are tools/, run from the checkout (not in the wheel).
bench: $(STAMP)
	$(BIN)/python -m tools.bench $(BENCH_ARGS)

# Regenerate the bundled demo sample from the generator (tests check they agree).
sample: $(STAMP)
	$(BIN)/python -m tools.synth pipeline/data/sample-signins.ndjson

# The README's picture of the HTML report over the bundled sample, taken by chromium.
report-screenshot: $(STAMP) peers
	$(BIN)/signin-risk report -o $(VENV)/sample-report.html
	$(BIN)/python -m tools.browser $(VENV)/sample-report.html docs/report.png

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
