# fraudstream: two commands on a fresh machine (Python 3.11, no Docker, no Kafka):
#   make demo   - embedded broker + worker + generated traffic with fraud, then a report
#   make test   - the whole test suite, through a real Kafka-protocol broker
# Both create .venv and install everything on first use.

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test venv lint typecheck clean mutation

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: 2.13.0 is the CPU build; an unpinned torch pulls GBs of CUDA wheels.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fraudstream demo

test: $(STAMP)
	@# pytest exits 5 when it collects nothing: say so and fail, never pass quietly.
	$(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: $(STAMP)
	$(VENV)/bin/ruff check stream models replay tests

typecheck: $(STAMP)
	$(VENV)/bin/mypy stream models replay

# A benchmark, not part of `make test`: mutation score per module and the surviving mutants
# (docs/mutation.md). MODULES="stream/core/caps.py models/fusion.py" picks the modules.
mutation: $(STAMP)
	$(PY) -c "import mutmut" 2>/dev/null || $(PY) -m pip install --quiet -e '.[test,mutation]'
	$(PY) -m stream.tools.bench.mutation --nice 10 $(if $(MODULES),--modules $(MODULES))

clean:
	rm -rf $(VENV) demo-output .pytest_cache .mypy_cache .ruff_cache fraudstream-data
