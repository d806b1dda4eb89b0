# `make demo` and `make test` are the whole set-up: each creates .venv on first use.
# demo installs the runtime dependencies only; test adds the test extras (pytest, hypothesis, and the
# reference stacks the parity tests compare against: torch CPU, transformers, tensorflow-cpu).
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME := $(VENV)/.installed-runtime
TESTING := $(VENV)/.installed-test

.PHONY: demo test bench browser

$(RUNTIME): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "make: installing vilasr and its runtime dependencies (jax, flax, optax, grain, ...) into $(VENV)"
	@$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	@touch $@

$(TESTING): $(RUNTIME)
	@echo "make: installing the test extras (pytest, hypothesis, torch CPU, transformers, tensorflow-cpu) into $(VENV)"
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

demo: $(RUNTIME)
	$(VENV)/bin/vilasr demo --out out/demo

# The gallery test drives a real headless Chromium: Debian's packages, installed once when absent.
# Not root (a laptop): say so and go on; that one test is then skipped.
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || \
	if [ "$$(id -u)" = 0 ]; then \
		echo "make: installing Debian's chromium and chromium-driver (for the gallery test)"; \
		apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "make: chromium/chromium-driver missing; install them (apt-get install chromium chromium-driver) to run the gallery test"; fi

test: $(TESTING) browser
	$(PY) -m pytest tests --durations=15

bench: $(RUNTIME)
	$(PY) benchmarks/drawing.py
