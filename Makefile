# Radix: the two commands of the README (`make demo`, `make test`) and the long jobs.
# Every target creates .venv at the repo root on first use (pip from PyPI only).

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.radix-installed
BUILD := build
DEMO_IMAGES ?= 200
DEMO_RESNET_IMAGES ?= 10
CLOCK_MHZ ?= 100

.PHONY: demo test venv verilog resources bench bench-quant bench-perf bench-host bench-resnet8-accuracy bench-mlperf-accuracy bench-mlperf-tiny-accuracy bitstream clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job: check and calibrate the committed LeNet-5 and ResNet-8, evaluate them on the
# reference backend, run them through the driver there (its host time per image is the driver's
# own cost; inside the RTL simulation every buffer access is a call into the simulator), then
# image by image on the RTL simulation, checked bit for bit.
demo: $(STAMP)
	mkdir -p $(BUILD)
	$(BIN)/radix check lenet5
	$(BIN)/radix calibrate lenet5 --data mnist5k --bits 8 -o $(BUILD)/lenet5-8.radix
	$(BIN)/radix eval $(BUILD)/lenet5-8.radix --backend reference --data mnist5k
	$(BIN)/radix run $(BUILD)/lenet5-8.radix --backend reference --data mnist5k --images $(DEMO_IMAGES)
	$(BIN)/radix run $(BUILD)/lenet5-8.radix --backend sim --data mnist5k --images $(DEMO_IMAGES)
	$(BIN)/radix check resnet8
	$(BIN)/radix calibrate resnet8 --data mnist32rgb --bits 8 --images 1000 -o $(BUILD)/resnet8-8.radix
	$(BIN)/radix eval $(BUILD)/resnet8-8.radix --data mnist32rgb
	$(BIN)/radix run $(BUILD)/resnet8-8.radix --backend reference --data mnist32rgb --images 100
	$(BIN)/radix run $(BUILD)/resnet8-8.radix --backend sim --data mnist32rgb --images $(DEMO_RESNET_IMAGES)
	# a depthwise network on the RTL: MLPerf Tiny's keyword-spotting topology (DS-CNN: a 10x4
	# stride-2 front, four depthwise-separable blocks), trained on the offline mnist49x10 maps
	$(BIN)/radix check dscnn
	$(BIN)/radix calibrate dscnn --data mnist49x10 --images 500 -o $(BUILD)/dscnn-8.radix
	$(BIN)/radix eval $(BUILD)/dscnn-8.radix --data mnist49x10
	$(BIN)/radix run $(BUILD)/dscnn-8.radix --backend sim --data mnist49x10 --images 2

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

bench-resnet8-accuracy: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/resnet8_accuracy.py

# MLCommons' own pretrained ResNet-8 against its own int8 TFLite model (about 10 minutes)
bench-mlperf-accuracy: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/mlperf_resnet8_accuracy.py

# MLCommons' own VWW, KWS and AD models: Radix 8-bit against MLCommons' int8 TFLite (about 3 minutes)
bench-mlperf-tiny-accuracy: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/mlperf_tiny_accuracy.py

bitstream: $(STAMP)
	CLOCK_MHZ=$(CLOCK_MHZ) BUILD=$(BUILD) RADIX=$(BIN)/radix boards/pynq_z2/bitstream.sh

bench-perf: $(STAMP)
	$(BIN)/python bench/performance.py

# per image: engine cycles (RTL), host time, register accesses, bytes, board estimate; v4 against v5
bench-host: $(STAMP)
	$(BIN)/python bench/host_overhead.py

clean:
	rm -rf $(BUILD) sim/build

.PHONY: bench-compress
bench-compress: $(STAMP)
	$(BIN)/python bench/compression.py
