# Everything runs inside .venv at the repository root (created or reused by every target).
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: setup export demo test test-slow clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# CPU build of PyTorch first, or `pip install -e .` would pull the multi-GB CUDA build from PyPI: PyTorch's own
	# CPU wheel index first; where it cannot be reached (offline mirrors that already hold the CPU build, as on the
	# machine this was built on) the configured index. Both fail fast (no retries), and an installed torch is kept.
	$(PIP) install -q torch==2.13.0 --index-url $(TORCH_CPU_INDEX) --timeout 15 --retries 0 \
	  || $(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test]'
	touch $(STAMP)

# ONNX for all generators (+ TensorRT plans where TensorRT and a GPU are present) into model_repository/.
export: setup
	$(PY) export/to_trt.py --model all

# Main job on a bundled sample: build a DNA-format set, export, start Triton, evaluate ksame and blur, stop.
demo: setup
	$(PY) -m facedeid.demo

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -m "not slow" -q

# Long load test (run by .ci/run after `make test`).
test-slow: setup
	$(PY) -m pytest -m slow -q

clean:
	rm -rf demo_out .pytest_cache
