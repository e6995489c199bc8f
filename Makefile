# refbench: `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test test-slow perf clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first (the CPU wheel), then the package under the constraints file so nothing moves torch.
$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PIP) install -q -c constraints.txt "torch==2.13.*"
	$(PIP) install -q -c constraints.txt -e ".[dev,serve,3d,retrieval,medical,detection,nas]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/refbench demo

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

perf: $(STAMP)
	$(PY) perf/runner.py

clean:
	rm -rf $(VENV) .refbench-cache runs
