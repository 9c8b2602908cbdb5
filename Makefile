# Two commands do everything on a fresh machine (each creates or reuses the virtual environment .venv):
#   make demo   train AR-UNet 3D briefly on generated demo data, segment, evaluate, print metrics
#   make test   run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-slow configs clean monailabel-venv test-monailabel

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

# Optional: MONAI Label 0.8.5 in its own environment (about 6 min and 3.7 GB; see docs/monai_label.md).
# custom_nets is deliberately NOT installed there: packaged bundles carry their own copy.
ML_VENV ?= .venv-monailabel
ML_PY := $(ML_VENV)/bin/python
ML_STAMP := $(ML_VENV)/.installed

$(ML_STAMP): requirements-monailabel.txt constraints-monailabel.txt scripts/patch_torchvision_ops.py
	@test -x $(ML_PY) || $(PYTHON) -m venv $(ML_VENV)
	$(ML_PY) -m pip install --quiet --upgrade pip
	@# PIP_CONSTRAINT: the constraints also apply to build environments (sam2's sdist builds against torch)
	PIP_CONSTRAINT=$(CURDIR)/constraints-monailabel.txt $(ML_PY) -m pip install --quiet -r requirements-monailabel.txt -c constraints-monailabel.txt
	$(ML_PY) scripts/patch_torchvision_ops.py
	@touch $(ML_STAMP)

monailabel-venv: $(ML_STAMP)

# packages bundles, serves them with the real MONAI Label server (from $(ML_VENV)), infers and trains through its API
test-monailabel: venv monailabel-venv
	MONAI_LABEL_VENV=$(CURDIR)/$(ML_VENV) $(PY) -m pytest -m slow tests/bundles/test_monai_label.py -v --durations=0

clean:
	rm -rf bundles/*/models bundles/*/runs bundles/*/eval bundles/*/demo_data demo_output
