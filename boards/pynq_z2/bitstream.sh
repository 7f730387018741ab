#!/usr/bin/env bash
# Build the PYNQ-Z2 overlay (what `make bitstream` runs):
#
#   1. the engine's Verilog:   $BUILD/engine.v        (radix verilog: the bus-master
#                              engine radix_bus_engine, engine version 5)
#   2. the overlay:            $OUT/radix.bit, radix.hwh, timing.txt, utilization.txt
#                              (Vivado, boards/pynq_z2/build_overlay.tcl; project in $BUILD/vivado)
#
# Settings (environment): CLOCK_MHZ (FCLK_CLK0, default 100: a frequency the PS makes, 1000 MHz
# over an integer divisor, e.g. 100, 111.111, 125, 142.857), BUILD (default build/), OUT
# (default $BUILD/overlay), JOBS (default 4), RADIX (the radix command, default .venv/bin/radix),
# RADIX_ALLOW_OTHER_VIVADO=1 (build with a Vivado other than the pinned 2022.1). Needs `vivado`
# 2022.1 with Zynq-7000 devices on PATH.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLOCK_MHZ="${CLOCK_MHZ:-100}"
BUILD="${BUILD:-$repo/build}"
OUT="${OUT:-$BUILD/overlay}"
JOBS="${JOBS:-4}"
RADIX="${RADIX:-$repo/.venv/bin/radix}"

# The clock first, before any tool: the same rule as build_overlay.tcl and radix/overlay.py
# (1000 MHz IO PLL / d0*d1 with two 6-bit dividers, 10..250 MHz, within 0.05%).
if ! CLOCK_MHZ="$(awk -v asked="$CLOCK_MHZ" 'function text(f) { s = sprintf("%.3f", f); sub(/0+$/, "", s); sub(/\.$/, "", s); return s }
BEGIN {
    if (asked !~ /^[0-9]+(\.[0-9]*)?$/ || asked + 0 <= 0) {
        printf "bitstream: error: CLOCK_MHZ '\''%s'\'' must be a number of MHz (FCLK_CLK0 of the Zynq-7000 PS)\n", asked > "/dev/stderr"; exit 1
    }
    for (d0 = 1; d0 <= 63; d0++) for (d1 = 1; d1 <= 63; d1++) n[d0 * d1] = 1
    best = 0; below = 0; above = 0
    for (k in n) {
        f = 1000.0 / k
        if (f < 10 || f > 250) continue
        if (best == 0 || (f - asked) ^ 2 < (best - asked) ^ 2) best = f
        if (f > asked && (above == 0 || f < above)) above = f
        if (f < asked && f > below) below = f
    }
    d = best - asked; if (d < 0) d = -d
    if (d <= 0.0005 * best) { print text(best); exit 0 }
    near = (below && above) ? "are " text(below) " and " text(above) : "is " text(below ? below : above)
    printf "bitstream: error: CLOCK_MHZ %s is not a frequency the PS can make (1000 MHz IO PLL / an integer divisor, 10..250 MHz): the nearest %s MHz\n", text(asked), near > "/dev/stderr"
    exit 1
}')"; then
    exit 2
fi

if ! command -v vivado >/dev/null 2>&1; then
    cat >&2 <<EOF
bitstream: error: 'vivado' is not on PATH, so the PYNQ-Z2 overlay cannot be built here.
  Needed: AMD Vivado 2022.1 (the free Standard edition is enough; the flow is pinned to it,
  boards/pynq_z2/ip_versions.json) with Zynq-7000 device support, e.g. under /tools/Xilinx; then
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
