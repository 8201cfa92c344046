# edgesam-deploy: `make demo` and `make test` set up everything they need from nothing.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-out
THREADS ?= 2

.PHONY: setup system-deps lint test demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[all,test]'
	touch $@

setup: $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup system-deps lint
	$(BIN)/python -m pytest tests

demo: setup
	mkdir -p $(DEMO_OUT)
	$(BIN)/python -c "import skimage.data, PIL.Image as I; I.fromarray(skimage.data.coffee()).save('$(DEMO_OUT)/coffee.png')"
	$(BIN)/edgesam-deploy segment $(DEMO_OUT)/coffee.png --point 300,200 --box 60,80,560,380 --random-weights 0 \
		--out $(DEMO_OUT)/coffee-overlay.png --mask-out $(DEMO_OUT)/coffee-mask.png
	$(BIN)/edgesam-deploy export --target all --random-weights 0 --out $(DEMO_OUT)/export \
		--json $(DEMO_OUT)/parity.json --junit $(DEMO_OUT)/parity.xml
	$(BIN)/edgesam-deploy bench --device host --artifacts $(DEMO_OUT)/export --threads $(THREADS) --runs 10 \
		--json $(DEMO_OUT)/bench.json --report $(DEMO_OUT)/bench.md

bench: setup
	$(BIN)/python benchmarks/bench_onnx.py --threads $(THREADS) --out benchmarks/results/onnx.json
	$(BIN)/python benchmarks/bench_tflite.py --threads $(THREADS) --out benchmarks/results/tflite.json
	$(BIN)/python benchmarks/bench_executorch.py --threads $(THREADS) --out benchmarks/results/executorch.json
	$(BIN)/python benchmarks/bench_decoder.py --threads $(THREADS) --out benchmarks/results/decoder.json
	$(MAKE) bench-scan

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache

.PHONY: bench-scan
bench-scan: setup  # the int8 (7-bit and 8-bit weights) and fp16 sensitivity scans and searches on the full model (long: every encoder block; int8 6-9 min each, fp16 6 min on a quiet 2-vCPU Zen 4 or Zen 5; docs/mixed-precision.md)
	$(BIN)/python benchmarks/bench_scan.py --threads $(THREADS) --out benchmarks/results/scan
	$(BIN)/python benchmarks/bench_scan.py --int8-weights 8-bit --threads $(THREADS) --out benchmarks/results/scan-8bit
	$(BIN)/python benchmarks/bench_scan.py --fp16 --threads $(THREADS) --out benchmarks/results/scan-fp16
