#!/usr/bin/env bash
# Build the PYNQ-Z2 overlay (what `make bitstream` runs):
#
#   1. the engine's Verilog:   $BUILD/engine.v        (radix verilog)
#   2. the overlay:            $OUT/radix.bit, radix.hwh, timing.txt, utilization.txt
#                              (Vivado, boards/pynq_z2/build_overlay.tcl; project in $BUILD/vivado)
#
# Settings (environment): CLOCK_MHZ (FCLK_CLK0, default 100), BUILD (default build/),
# OUT (default $BUILD/overlay), JOBS (default 4), RADIX (the radix command, default
# .venv/bin/radix). Needs `vivado` (2022.1 or later, with Zynq-7000 devices) on PATH.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLOCK_MHZ="${CLOCK_MHZ:-100}"
BUILD="${BUILD:-$repo/build}"
OUT="${OUT:-$BUILD/overlay}"
JOBS="${JOBS:-4}"
RADIX="${RADIX:-$repo/.venv/bin/radix}"

if ! command -v vivado >/dev/null 2>&1; then
    cat >&2 <<EOF
bitstream: error: 'vivado' is not on PATH, so the PYNQ-Z2 overlay cannot be built here.
  Needed: AMD Vivado 2022.1 or later (the free Standard edition is enough) with Zynq-7000
  device support, e.g. installed under /tools/Xilinx; then
      source /tools/Xilinx/Vivado/2022.1/settings64.sh
      make bitstream CLOCK_MHZ=$CLOCK_MHZ
  Or copy a prebuilt radix.bit + radix.hwh to the board (boards/pynq_z2/README.md).
EOF
    exit 2
fi
if [ ! -x "$RADIX" ]; then
    echo "bitstream: error: $RADIX not found: run 'make venv' first (or set RADIX=path/to/radix)" >&2
    exit 2
fi

mkdir -p "$BUILD" "$OUT"
BUILD="$(cd "$BUILD" && pwd)"
OUT="$(cd "$OUT" && pwd)"
"$RADIX" verilog -o "$BUILD/engine.v"

# Vivado writes its journal, logs and .Xil/ into the working directory: keep them in $BUILD
cd "$BUILD"
vivado -mode batch -nojournal -log "$OUT/vivado.log" \
    -source "$repo/boards/pynq_z2/build_overlay.tcl" \
    -tclargs "$BUILD/engine.v" "$OUT" "$CLOCK_MHZ" "$BUILD/vivado" "$JOBS"
echo "bitstream: overlay in $OUT (radix.bit, radix.hwh); see boards/pynq_z2/README.md to run it on the board"
