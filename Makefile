# Radix: the two commands of the README (`make demo`, `make test`) and the long jobs.
# Every target creates .venv at the repo root on first use (pip from PyPI only).

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.radix-installed
BUILD := build
DEMO_IMAGES ?= 200
CLOCK_MHZ ?= 100

.PHONY: demo test venv verilog resources bench bench-quant bench-perf bitstream clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job: check and calibrate the committed LeNet-5, evaluate it on the reference backend,
# then run it image by image through the driver on the RTL simulation, checked bit for bit.
demo: $(STAMP)
	mkdir -p $(BUILD)
	$(BIN)/radix check lenet5
	$(BIN)/radix calibrate lenet5 --data mnist5k --bits 8 -o $(BUILD)/lenet5-8.radix
	$(BIN)/radix eval $(BUILD)/lenet5-8.radix --backend reference --data mnist5k
	$(BIN)/radix run $(BUILD)/lenet5-8.radix --backend reference --data mnist5k --images $(DEMO_IMAGES)
	$(BIN)/radix run $(BUILD)/lenet5-8.radix --backend sim --data mnist5k --images $(DEMO_IMAGES)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

verilog: $(STAMP)
	mkdir -p $(BUILD)
	$(BIN)/radix verilog -o $(BUILD)/engine.v

resources: $(STAMP)
	$(BIN)/radix resources

bench: bench-quant bench-perf

bench-quant: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/quantization.py

bitstream: $(STAMP)
	CLOCK_MHZ=$(CLOCK_MHZ) BUILD=$(BUILD) RADIX=$(BIN)/radix boards/pynq_z2/bitstream.sh

bench-perf: $(STAMP)
	$(BIN)/python bench/performance.py

clean:
	rm -rf $(BUILD) sim/build
