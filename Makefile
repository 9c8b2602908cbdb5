# Two commands do everything on a fresh machine (each creates or reuses the virtual environment .venv):
#   make demo   train AR-UNet 3D briefly on generated demo data, segment, evaluate, print metrics
#   make test   run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-slow configs clean

$(STAMP): requirements.txt requirements-dev.txt requirements-export.txt requirements-tracking.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -e .
	@touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(PY) scripts/demo.py

test: venv
	$(PY) -m pytest -n 2 --durations=15

test-slow: venv
	$(PY) -m pytest -n 2 -m slow

configs: venv
	$(PY) scripts/build_bundle_configs.py

clean:
	rm -rf bundles/*/models bundles/*/runs bundles/*/eval bundles/*/demo_data demo_output
