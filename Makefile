# Everything runs inside .venv at the repository root (created or reused by every target).
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed

.PHONY: setup export demo test test-slow clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# CPU build of PyTorch first (from local disk here); otherwise pip would pull a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
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
	$(PY) -m pytest -m "not slow" -q

# Long load test (run by .ci/run after `make test`).
test-slow: setup
	$(PY) -m pytest -m slow -q

clean:
	rm -rf demo_out .pytest_cache
