# Radix PYNQ-Z2 overlay: the bus-master engine (engine version 13) on the Zynq PS.
#
#   vivado -mode batch -source boards/pynq_z2/build_overlay.tcl \
#          -tclargs ENGINE_V OUT_DIR [CLOCK_MHZ] [BUILD_DIR] [JOBS]
#
#   ENGINE_V   the engine's Verilog (module radix_bus_engine), e.g. build/engine.v from
#              `radix verilog` (radix_hw.verilog.generate)
#   OUT_DIR    where radix.bit, radix.hwh and the timing/utilisation reports are written
#   CLOCK_MHZ  FCLK_CLK0, the engine's clock (default 100): a frequency the PS makes, 1000 MHz
#              (its IO PLL) over an integer divisor: 100, 111.111, 125, 142.857, 166.667, 200...
#   BUILD_DIR  the Vivado project (default OUT_DIR/vivado)
#   JOBS       parallel synthesis/implementation jobs (default 4)
#
# Vivado 2022.1 with Zynq-7000 device support: the version PYNQ v3.0.1's own overlays come from.
# The IP versions are pinned to that Vivado's (boards/pynq_z2/ip_versions.json); another Vivado
# is refused, naming both versions, unless RADIX_ALLOW_OTHER_VIVADO=1 is set (then the pinned IP
# versions must still be in its catalogue). boards/pynq_z2/bitstream.sh (`make bitstream`)
# generates the Verilog and calls this script. This flow has not yet run in Vivado: it is checked
# against a mock Vivado (tests/test_board_tcl.py).
#
# The engine's pin and interface properties (clock association and frequency, reset polarity,
# interrupt sensitivity, the master's protocol and burst length) come from the X_INTERFACE
# attributes that radix_hw.verilog writes into the Verilog; this script checks them once the
# pins are connected (Vivado reports them reliably only then) and sets none. The one it adapts
# is the clock's FREQ_HZ, which must equal FCLK_CLK0's exactly: it adds a copy of ENGINE_V whose
# FREQ_HZ is the frequency the PS7 reports (BUILD_DIR/radix_bus_engine.v).
#
# Block design `radix` (cell names are what PYNQ's ip_dict shows; radix/overlay.py names them
# for radix/pynq_transport.py, tests/test_board_tcl.py keeps the two in step):
#
#   ps7 M_AXI_GP0 -> periph_ic -> engine/s_axi        (AXI4-Lite, 4 KiB at 0x43C0_0000)
#                              -> axi_intc/s_axi      (64 KiB at 0x4180_0000)
#   engine/m_axi (AXI4, 64-bit, bursts <= 16) -> mem_ic (AXI4 -> AXI3) -> ps7 S_AXI_HP0 (64-bit)
#   engine/m_axi's address space: the DDR through S_AXI_HP0 (HP0_DDR_LOWOCM, 512 MiB at 0)
#   engine/interrupt -> axi_intc/intr ; axi_intc/irq -> ps7 IRQ_F2P[0]
#   FCLK_CLK0 clocks everything; rst_fclk0 (proc_sys_reset) resets it; engine/rst is active high
#
# The engine fetches its command list, weights and activations itself: there is no AXI DMA.
# PYNQ 3.0.1 hands an interrupt to Python (pynq.Interrupt) only through an AXI interrupt
# controller, hence axi_intc between the engine and IRQ_F2P (the transport polls STATUS on an
# overlay without it).

set part xc7z020clg400-1
set project_name radix_overlay
set bd_name radix
set engine_module radix_bus_engine
set hp_data_bits 64
set engine_base 0x43C00000
set engine_range 4K
set intc_base 0x41800000
set intc_range 64K
set ddr_base 0x00000000
set ddr_range 512M

# Vivado and IP versions, as in boards/pynq_z2/ip_versions.json (tests/test_board_tcl.py keeps
# the two equal): PYNQ v3.0.1's boards/Pynq-Z2/base/base.tcl, written by Vivado 2022.1
set pinned_vivado 2022.1
set allow_other_vivado RADIX_ALLOW_OTHER_VIVADO
set ip_vlnv [dict create \
    processing_system7 xilinx.com:ip:processing_system7:5.5 \
    axi_interconnect xilinx.com:ip:axi_interconnect:2.1 \
    axi_intc xilinx.com:ip:axi_intc:4.1 \
    proc_sys_reset xilinx.com:ip:proc_sys_reset:5.0 \
]

# FCLK_CLK0 = the IO PLL / (DIVISOR0 * DIVISOR1), two 6-bit dividers (radix/overlay.py is the
# same rule for the board's software; the fabric clock is at most 250 MHz)
set fclk_source_mhz 1000.0
set fclk_divider_max 63
set fclk_min_mhz 10.0
set fclk_max_mhz 250.0
set fclk_tolerance 0.0005

proc fail {message} {
    puts stderr "build_overlay.tcl: error: $message"
    exit 1
}

proc note {message} {
    puts "build_overlay.tcl: $message"
}

# A frequency with at most three decimals: 142.857, 100.
proc mhz_text {mhz} {
    return [string trimright [string trimright [format %.3f $mhz] 0] .]
}

# Every FCLK_CLK0 frequency the PS makes in fclk_min_mhz..fclk_max_mhz, highest first.
proc fclk_choices {} {
    global fclk_source_mhz fclk_divider_max fclk_min_mhz fclk_max_mhz
    set products {}
    for {set d0 1} {$d0 <= $fclk_divider_max} {incr d0} {
        for {set d1 1} {$d1 <= $fclk_divider_max} {incr d1} {
            lappend products [expr {$d0 * $d1}]
        }
    }
    set choices {}
    foreach n [lsort -integer -unique $products] {
        set mhz [expr {$fclk_source_mhz / $n}]
        if {$mhz >= $fclk_min_mhz && $mhz <= $fclk_max_mhz} {
            lappend choices $mhz
        }
    }
    return $choices
}

# The exact PS frequency CLOCK_MHZ names, or a refusal naming the nearest ones.
proc fclk_check {asked} {
    global fclk_source_mhz fclk_min_mhz fclk_max_mhz fclk_tolerance
    set nearest ""
    set below ""
    set above ""
    foreach mhz [fclk_choices] {
        if {$nearest eq "" || abs($mhz - $asked) < abs($nearest - $asked)} {
            set nearest $mhz
        }
        if {$mhz > $asked} {
            set above $mhz
        } elseif {$mhz < $asked && $below eq ""} {
            set below $mhz
        }
    }
    if {abs($nearest - $asked) <= $fclk_tolerance * $nearest} {
        return $nearest
    }
    set neighbours {}
    foreach mhz [list $below $above] {
        if {$mhz ne ""} {
            lappend neighbours [mhz_text $mhz]
        }
    }
    set verb [expr {[llength $neighbours] == 2 ? "are" : "is"}]
    fail "CLOCK_MHZ [mhz_text $asked] is not a frequency the PS can make ([mhz_text $fclk_source_mhz] MHz IO PLL / an integer divisor, [mhz_text $fclk_min_mhz]..[mhz_text $fclk_max_mhz] MHz): the nearest $verb [join $neighbours { and }] MHz"
}

# ---- arguments -----------------------------------------------------------------------------

if {$argc < 2 || $argc > 5} {
    fail "usage: vivado -mode batch -source build_overlay.tcl -tclargs ENGINE_V OUT_DIR \[CLOCK_MHZ\] \[BUILD_DIR\] \[JOBS\] (got $argc arguments: $argv)"
}
set engine_v [file normalize [lindex $argv 0]]
set out_dir [file normalize [lindex $argv 1]]
set clock_mhz 100
if {$argc >= 3} {
    set clock_mhz [lindex $argv 2]
}
set build_dir [file join $out_dir vivado]
if {$argc >= 4} {
    set build_dir [file normalize [lindex $argv 3]]
}
set jobs 4
if {$argc >= 5} {
    set jobs [lindex $argv 4]
}

if {![string is double -strict $clock_mhz] || $clock_mhz <= 0} {
    fail "CLOCK_MHZ '$clock_mhz' must be a number of MHz (FCLK_CLK0 of the Zynq-7000 PS)"
}
set clock_mhz [mhz_text [fclk_check $clock_mhz]]
if {![string is integer -strict $jobs] || $jobs < 1} {
    fail "JOBS '$jobs' must be a positive integer"
}
if {![file isfile $engine_v]} {
    fail "engine Verilog $engine_v not found: generate it with `radix verilog -o $engine_v`"
}
set handle [open $engine_v r]
set engine_text [read $handle]
close $handle
if {![regexp "module\\s+$engine_module\\s*\\(" $engine_text]} {
    fail "$engine_v has no module $engine_module: is it the output of `radix verilog` (the bus-master engine, engine version 13)?"
}
# the clock's FREQ_HZ, in the clk port's X_INTERFACE_PARAMETER (replaced below by FCLK_CLK0's)
set freq_pattern {(X_INTERFACE_PARAMETER = "[^"]*FREQ_HZ )([0-9]+)}
set freq_count [regexp -all $freq_pattern $engine_text]
if {$freq_count != 1} {
    fail "$engine_v declares FREQ_HZ $freq_count times, expected once, on clk: regenerate it with `radix verilog -o $engine_v`"
}

# ---- tool checks ---------------------------------------------------------------------------

set vivado_version [version -short]
if {![regexp "^[string map {. \\.} $pinned_vivado](\\.|\$)" $vivado_version]} {
    if {[info exists ::env($allow_other_vivado)] && $::env($allow_other_vivado) eq "1"} {
        note "warning: Vivado $vivado_version, not the pinned Vivado $pinned_vivado ($allow_other_vivado=1): untested with PYNQ v3.0.1"
    } else {
        fail "Vivado $vivado_version is not Vivado $pinned_vivado, the version this flow and its IP versions are pinned to (boards/pynq_z2/ip_versions.json, PYNQ v3.0.1's own overlays): use Vivado $pinned_vivado, or set $allow_other_vivado=1 to build with $vivado_version anyway"
    }
}
if {[llength [get_parts -quiet $part]] == 0} {
    fail "this Vivado has no device $part: install Zynq-7000 device support (Vivado installer, 'Devices > SoCs > Zynq-7000')"
}

# The pinned VLNV of a Xilinx IP, refused when this Vivado's catalogue lacks it.
proc pinned_ip {name} {
    global ip_vlnv
    set vlnv [dict get $ip_vlnv $name]
    if {[llength [get_ipdefs -all -quiet $vlnv]] == 0} {
        set others [get_ipdefs -all -quiet "xilinx.com:ip:$name:*"]
        fail "IP $vlnv (pinned, boards/pynq_z2/ip_versions.json) is not in this Vivado's IP catalogue (it has: [expr {[llength $others] ? [join $others {, }] : {no version}}])"
    }
    return $vlnv
}

# ---- project -------------------------------------------------------------------------------

note "Vivado $vivado_version, $part, FCLK_CLK0 $clock_mhz MHz, project in $build_dir"
create_project -force $project_name $build_dir -part $part
set board_part [lindex [lsort -dictionary [get_board_parts -quiet -latest_file_version {*pynq-z2*}]] end]
if {$board_part ne ""} {
    note "board part $board_part"
    set_property board_part $board_part [current_project]
} else {
    note "no PYNQ-Z2 board files in this Vivado: using the part and the PS7 settings written below"
}
set_property target_language Verilog [current_project]
create_bd_design $bd_name

# ---- processing system ---------------------------------------------------------------------

# The PYNQ-Z2's PS7 settings for a Vivado without the board files: the clock sources, bank
# voltages, MIO peripherals and every DDR3 parameter (part, timing, trace lengths and delays)
# exactly as PYNQ's own base design sets them: PYNQ v3.0.1 (tag commit 93ddd21a),
# boards/Pynq-Z2/base/base.tcl, the ps7_0 cell. PYNQ boots the PS itself, so at run time only
# the PL side matters; these make the design validate, the .hwh describe the board and a boot
# image built from this design work.
set pynq_z2_ps7 [list \
    CONFIG.PCW_CRYSTAL_PERIPHERAL_FREQMHZ {50} \
    CONFIG.PCW_APU_PERIPHERAL_FREQMHZ {650} \
    CONFIG.PCW_PRESET_BANK0_VOLTAGE {LVCMOS 3.3V} \
    CONFIG.PCW_PRESET_BANK1_VOLTAGE {LVCMOS 1.8V} \
    CONFIG.PCW_QSPI_PERIPHERAL_ENABLE {1} \
    CONFIG.PCW_QSPI_GRP_SINGLE_SS_ENABLE {1} \
    CONFIG.PCW_QSPI_GRP_FBCLK_ENABLE {1} \
    CONFIG.PCW_ENET0_PERIPHERAL_ENABLE {1} \
    CONFIG.PCW_ENET0_ENET0_IO {MIO 16 .. 27} \
    CONFIG.PCW_ENET0_GRP_MDIO_ENABLE {1} \
    CONFIG.PCW_ENET0_GRP_MDIO_IO {MIO 52 .. 53} \
    CONFIG.PCW_ENET0_RESET_ENABLE {0} \
    CONFIG.PCW_SD0_PERIPHERAL_ENABLE {1} \
    CONFIG.PCW_SD0_SD0_IO {MIO 40 .. 45} \
    CONFIG.PCW_SD0_GRP_CD_ENABLE {1} \
    CONFIG.PCW_SD0_GRP_CD_IO {MIO 47} \
    CONFIG.PCW_UART0_PERIPHERAL_ENABLE {1} \
    CONFIG.PCW_UART0_UART0_IO {MIO 14 .. 15} \
    CONFIG.PCW_USB0_PERIPHERAL_ENABLE {1} \
    CONFIG.PCW_USB0_USB0_IO {MIO 28 .. 39} \
    CONFIG.PCW_USB0_RESET_ENABLE {0} \
    CONFIG.PCW_GPIO_MIO_GPIO_ENABLE {0} \
    CONFIG.PCW_IOPLL_CTRL_FBDIV {20} \
    CONFIG.PCW_FCLK0_PERIPHERAL_CLKSRC {IO PLL} \
    CONFIG.PCW_UIPARAM_DDR_ADV_ENABLE {0} \
    CONFIG.PCW_UIPARAM_DDR_AL {0} \
    CONFIG.PCW_UIPARAM_DDR_BANK_ADDR_COUNT {3} \
    CONFIG.PCW_UIPARAM_DDR_BL {8} \
    CONFIG.PCW_UIPARAM_DDR_BOARD_DELAY0 {0.223} \
    CONFIG.PCW_UIPARAM_DDR_BOARD_DELAY1 {0.212} \
    CONFIG.PCW_UIPARAM_DDR_BOARD_DELAY2 {0.085} \
    CONFIG.PCW_UIPARAM_DDR_BOARD_DELAY3 {0.092} \
    CONFIG.PCW_UIPARAM_DDR_BUS_WIDTH {16 Bit} \
    CONFIG.PCW_UIPARAM_DDR_CL {7} \
    CONFIG.PCW_UIPARAM_DDR_CLOCK_0_LENGTH_MM {25.8} \
    CONFIG.PCW_UIPARAM_DDR_CLOCK_0_PACKAGE_LENGTH {80.4535} \
    CONFIG.PCW_UIPARAM_DDR_CLOCK_0_PROPOGATION_DELAY {160} \
    CONFIG.PCW_UIPARAM_DDR_CLOCK_1_LENGTH_MM {25.8} \
    CONFIG.PCW_UIPARAM_DDR_CLOCK_1_PACKAGE_LENGTH {80.4535} \
    CONFIG.PCW_UIPARAM_DDR_CLOCK_1_PROPOGATION_DELAY {160} \
    CONFIG.PCW_UIPARAM_DDR_CLOCK_2_LENGTH_MM {0} \
    CONFIG.PCW_UIPARAM_DDR_CLOCK_2_PACKAGE_LENGTH {80.4535} \
    CONFIG.PCW_UIPARAM_DDR_CLOCK_2_PROPOGATION_DELAY {160} \
    CONFIG.PCW_UIPARAM_DDR_CLOCK_3_LENGTH_MM {0} \
    CONFIG.PCW_UIPARAM_DDR_CLOCK_3_PACKAGE_LENGTH {80.4535} \
    CONFIG.PCW_UIPARAM_DDR_CLOCK_3_PROPOGATION_DELAY {160} \
    CONFIG.PCW_UIPARAM_DDR_CLOCK_STOP_EN {0} \
    CONFIG.PCW_UIPARAM_DDR_COL_ADDR_COUNT {10} \
    CONFIG.PCW_UIPARAM_DDR_CWL {6} \
    CONFIG.PCW_UIPARAM_DDR_DEVICE_CAPACITY {4096 MBits} \
    CONFIG.PCW_UIPARAM_DDR_DQS_0_LENGTH_MM {15.6} \
    CONFIG.PCW_UIPARAM_DDR_DQS_0_PACKAGE_LENGTH {105.056} \
    CONFIG.PCW_UIPARAM_DDR_DQS_0_PROPOGATION_DELAY {160} \
    CONFIG.PCW_UIPARAM_DDR_DQS_1_LENGTH_MM {18.8} \
    CONFIG.PCW_UIPARAM_DDR_DQS_1_PACKAGE_LENGTH {66.904} \
    CONFIG.PCW_UIPARAM_DDR_DQS_1_PROPOGATION_DELAY {160} \
    CONFIG.PCW_UIPARAM_DDR_DQS_2_LENGTH_MM {0} \
    CONFIG.PCW_UIPARAM_DDR_DQS_2_PACKAGE_LENGTH {89.1715} \
    CONFIG.PCW_UIPARAM_DDR_DQS_2_PROPOGATION_DELAY {160} \
    CONFIG.PCW_UIPARAM_DDR_DQS_3_LENGTH_MM {0} \
    CONFIG.PCW_UIPARAM_DDR_DQS_3_PACKAGE_LENGTH {113.63} \
    CONFIG.PCW_UIPARAM_DDR_DQS_3_PROPOGATION_DELAY {160} \
    CONFIG.PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_0 {0.040} \
    CONFIG.PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_1 {0.058} \
    CONFIG.PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_2 {0.000} \
    CONFIG.PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_3 {0.000} \
    CONFIG.PCW_UIPARAM_DDR_DQ_0_LENGTH_MM {16.5} \
    CONFIG.PCW_UIPARAM_DDR_DQ_0_PACKAGE_LENGTH {98.503} \
    CONFIG.PCW_UIPARAM_DDR_DQ_0_PROPOGATION_DELAY {160} \
    CONFIG.PCW_UIPARAM_DDR_DQ_1_LENGTH_MM {18} \
    CONFIG.PCW_UIPARAM_DDR_DQ_1_PACKAGE_LENGTH {68.5855} \
    CONFIG.PCW_UIPARAM_DDR_DQ_1_PROPOGATION_DELAY {160} \
    CONFIG.PCW_UIPARAM_DDR_DQ_2_LENGTH_MM {0} \
    CONFIG.PCW_UIPARAM_DDR_DQ_2_PACKAGE_LENGTH {90.295} \
    CONFIG.PCW_UIPARAM_DDR_DQ_2_PROPOGATION_DELAY {160} \
    CONFIG.PCW_UIPARAM_DDR_DQ_3_LENGTH_MM {0} \
    CONFIG.PCW_UIPARAM_DDR_DQ_3_PACKAGE_LENGTH {103.977} \
    CONFIG.PCW_UIPARAM_DDR_DQ_3_PROPOGATION_DELAY {160} \
    CONFIG.PCW_UIPARAM_DDR_DRAM_WIDTH {16 Bits} \
    CONFIG.PCW_UIPARAM_DDR_ECC {Disabled} \
    CONFIG.PCW_UIPARAM_DDR_ENABLE {1} \
    CONFIG.PCW_UIPARAM_DDR_FREQ_MHZ {525} \
    CONFIG.PCW_UIPARAM_DDR_HIGH_TEMP {Normal (0-85)} \
    CONFIG.PCW_UIPARAM_DDR_MEMORY_TYPE {DDR 3} \
    CONFIG.PCW_UIPARAM_DDR_PARTNO {Custom} \
    CONFIG.PCW_UIPARAM_DDR_ROW_ADDR_COUNT {15} \
    CONFIG.PCW_UIPARAM_DDR_SPEED_BIN {DDR3_1066F} \
    CONFIG.PCW_UIPARAM_DDR_TRAIN_DATA_EYE {1} \
    CONFIG.PCW_UIPARAM_DDR_TRAIN_READ_GATE {1} \
    CONFIG.PCW_UIPARAM_DDR_TRAIN_WRITE_LEVEL {1} \
    CONFIG.PCW_UIPARAM_DDR_T_FAW {40.0} \
    CONFIG.PCW_UIPARAM_DDR_T_RAS_MIN {35.0} \
    CONFIG.PCW_UIPARAM_DDR_T_RC {50.625} \
    CONFIG.PCW_UIPARAM_DDR_T_RCD {13.125} \
    CONFIG.PCW_UIPARAM_DDR_T_RP {13.125} \
    CONFIG.PCW_UIPARAM_DDR_USE_INTERNAL_VREF {0} \
]

set ps [create_bd_cell -type ip -vlnv [pinned_ip processing_system7] ps7]
if {$board_part ne ""} {
    apply_bd_automation -rule xilinx.com:bd_rule:processing_system7 \
        -config {make_external "FIXED_IO, DDR" apply_board_preset "1" Master "Disable" Slave "Disable"} $ps
} else {
    set_property -dict $pynq_z2_ps7 $ps
    create_bd_intf_port -mode Master -vlnv xilinx.com:interface:ddrx_rtl:1.0 DDR
    create_bd_intf_port -mode Master -vlnv xilinx.com:display_processing_system7:fixedio_rtl:1.0 FIXED_IO
    connect_bd_intf_net [get_bd_intf_ports DDR] [get_bd_intf_pins ps7/DDR]
    connect_bd_intf_net [get_bd_intf_ports FIXED_IO] [get_bd_intf_pins ps7/FIXED_IO]
}
set_property -dict [list \
    CONFIG.PCW_USE_M_AXI_GP0 {1} \
    CONFIG.PCW_USE_S_AXI_HP0 {1} \
    CONFIG.PCW_S_AXI_HP0_DATA_WIDTH $hp_data_bits \
    CONFIG.PCW_EN_CLK0_PORT {1} \
    CONFIG.PCW_EN_RST0_PORT {1} \
    CONFIG.PCW_FCLK0_PERIPHERAL_CLKSRC {IO PLL} \
    CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ $clock_mhz \
    CONFIG.PCW_USE_FABRIC_INTERRUPT {1} \
    CONFIG.PCW_IRQ_F2P_INTR {1} \
] $ps
set actual_mhz [get_property CONFIG.PCW_ACT_FPGA0_PERIPHERAL_FREQMHZ $ps]
note "FCLK_CLK0: asked $clock_mhz MHz, the PS clock dividers give $actual_mhz MHz"
if {![string is double -strict $actual_mhz] || abs($actual_mhz - $clock_mhz) > $fclk_tolerance * $clock_mhz} {
    fail "FCLK_CLK0 is '$actual_mhz' MHz, not the $clock_mhz MHz asked: the PS7's IO PLL is not at [mhz_text $fclk_source_mhz] MHz (PYNQ sets the clock the .hwh records)"
}

# ---- the engine's Verilog, its clock at FCLK_CLK0's exact frequency ----------------------

set fclk_hz [get_property CONFIG.FREQ_HZ [get_bd_pins ps7/FCLK_CLK0]]
if {![string is integer -strict $fclk_hz] || $fclk_hz <= 0} {
    fail "ps7/FCLK_CLK0 reports FREQ_HZ '$fclk_hz', not a frequency in Hz"
}
regexp $freq_pattern $engine_text -> prefix declared_hz
file mkdir $build_dir
set engine_copy [file join $build_dir $engine_module.v]
set handle [open $engine_copy w]
puts -nonewline $handle [regsub $freq_pattern $engine_text "\\1$fclk_hz"]
close $handle
if {$declared_hz != $fclk_hz} {
    note "engine clock: $engine_v declares FREQ_HZ $declared_hz, FCLK_CLK0 is $fclk_hz Hz: adding $engine_copy with FREQ_HZ $fclk_hz"
}
add_files -norecurse $engine_copy
update_compile_order -fileset sources_1

# ---- engine, interrupt controller, interconnects, reset ------------------------------------

create_bd_cell -type module -reference $engine_module engine
foreach intf {s_axi m_axi} {
    if {[llength [get_bd_intf_pins -quiet engine/$intf]] == 0} {
        fail "Vivado inferred no interface $intf from the ports of $engine_module in $engine_v (expected ${intf}_* AXI ports)"
    }
}
create_bd_cell -type ip -vlnv [pinned_ip axi_intc] axi_intc
set periph_ic [create_bd_cell -type ip -vlnv [pinned_ip axi_interconnect] periph_ic]
set_property -dict [list CONFIG.NUM_SI {1} CONFIG.NUM_MI {2}] $periph_ic
set mem_ic [create_bd_cell -type ip -vlnv [pinned_ip axi_interconnect] mem_ic]
set_property -dict [list CONFIG.NUM_SI {1} CONFIG.NUM_MI {1}] $mem_ic
create_bd_cell -type ip -vlnv [pinned_ip proc_sys_reset] rst_fclk0

# control: PS -> engine registers and the interrupt controller
connect_bd_intf_net [get_bd_intf_pins ps7/M_AXI_GP0] [get_bd_intf_pins periph_ic/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins periph_ic/M00_AXI] [get_bd_intf_pins engine/s_axi]
connect_bd_intf_net [get_bd_intf_pins periph_ic/M01_AXI] [get_bd_intf_pins axi_intc/s_axi]
# data: the engine's master -> the DDR through HP0 (mem_ic converts AXI4 to the port's AXI3)
connect_bd_intf_net [get_bd_intf_pins engine/m_axi] [get_bd_intf_pins mem_ic/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins mem_ic/M00_AXI] [get_bd_intf_pins ps7/S_AXI_HP0]

# one clock: FCLK_CLK0
connect_bd_net [get_bd_pins ps7/FCLK_CLK0] \
    [get_bd_pins ps7/M_AXI_GP0_ACLK] [get_bd_pins ps7/S_AXI_HP0_ACLK] \
    [get_bd_pins rst_fclk0/slowest_sync_clk] \
    [get_bd_pins periph_ic/ACLK] [get_bd_pins periph_ic/S00_ACLK] \
    [get_bd_pins periph_ic/M00_ACLK] [get_bd_pins periph_ic/M01_ACLK] \
    [get_bd_pins mem_ic/ACLK] [get_bd_pins mem_ic/S00_ACLK] [get_bd_pins mem_ic/M00_ACLK] \
    [get_bd_pins axi_intc/s_axi_aclk] \
    [get_bd_pins engine/clk]

# resets: the PS's FCLK_RESET0_N through proc_sys_reset, synchronous to FCLK_CLK0
connect_bd_net [get_bd_pins ps7/FCLK_RESET0_N] [get_bd_pins rst_fclk0/ext_reset_in]
connect_bd_net [get_bd_pins rst_fclk0/interconnect_aresetn] \
    [get_bd_pins periph_ic/ARESETN] [get_bd_pins mem_ic/ARESETN]
connect_bd_net [get_bd_pins rst_fclk0/peripheral_aresetn] \
    [get_bd_pins periph_ic/S00_ARESETN] [get_bd_pins periph_ic/M00_ARESETN] \
    [get_bd_pins periph_ic/M01_ARESETN] \
    [get_bd_pins mem_ic/S00_ARESETN] [get_bd_pins mem_ic/M00_ARESETN] \
    [get_bd_pins axi_intc/s_axi_aresetn]
connect_bd_net [get_bd_pins rst_fclk0/peripheral_reset] [get_bd_pins engine/rst]

# the interrupt: engine -> axi_intc input 0 -> IRQ_F2P[0]
connect_bd_net [get_bd_pins engine/interrupt] [get_bd_pins axi_intc/intr]
connect_bd_net [get_bd_pins axi_intc/irq] [get_bd_pins ps7/IRQ_F2P]

# ---- the engine's pin and interface properties, now that they are connected ----------------

# (object, property, value): what radix_hw.verilog's X_INTERFACE attributes declare
set engine_properties [list \
    engine/clk CONFIG.ASSOCIATED_BUSIF s_axi:m_axi \
    engine/clk CONFIG.ASSOCIATED_RESET rst \
    engine/clk CONFIG.FREQ_HZ $fclk_hz \
    engine/rst CONFIG.POLARITY ACTIVE_HIGH \
    engine/interrupt CONFIG.SENSITIVITY LEVEL_HIGH \
    engine/m_axi CONFIG.PROTOCOL AXI4 \
    engine/m_axi CONFIG.MAX_BURST_LENGTH 16 \
]
foreach {object property expected} $engine_properties {
    if {$object eq "engine/m_axi"} {
        set actual [get_property $property [get_bd_intf_pins $object]]
    } else {
        set actual [get_property $property [get_bd_pins $object]]
    }
    # a bus association is a set: compare it sorted
    if {[lsort [split $actual :]] ne [lsort [split $expected :]]} {
        fail "$object $property is '$actual', expected '$expected': $engine_v lacks the X_INTERFACE attributes of `radix verilog` (regenerate it: radix verilog -o $engine_v)"
    }
}

# ---- addresses -----------------------------------------------------------------------------

set engine_seg [get_bd_addr_segs -quiet engine/s_axi/*]
if {[llength $engine_seg] != 1} {
    fail "engine/s_axi has [llength $engine_seg] address segments, expected one (an AXI4-Lite slave)"
}
assign_bd_address -offset $engine_base -range $engine_range \
    -target_address_space [get_bd_addr_spaces ps7/Data] $engine_seg -force
assign_bd_address -offset $intc_base -range $intc_range \
    -target_address_space [get_bd_addr_spaces ps7/Data] [get_bd_addr_segs axi_intc/S_AXI/Reg] -force
set engine_space [get_bd_addr_spaces -quiet engine/m_axi]
if {[llength $engine_space] != 1} {
    fail "engine/m_axi has [llength $engine_space] address spaces, expected one (an AXI4 master)"
}
assign_bd_address -offset $ddr_base -range $ddr_range \
    -target_address_space $engine_space [get_bd_addr_segs ps7/S_AXI_HP0/HP0_DDR_LOWOCM] -force

# ---- validate, wrapper, bitstream ----------------------------------------------------------

validate_bd_design
save_bd_design
set bd_file [get_files $bd_name.bd]
generate_target all $bd_file
add_files -norecurse [make_wrapper -files $bd_file -top]
set_property top ${bd_name}_wrapper [current_fileset]
update_compile_order -fileset sources_1

launch_runs impl_1 -to_step write_bitstream -jobs $jobs
wait_on_run impl_1
foreach run {synth_1 impl_1} {
    if {[get_property PROGRESS [get_runs $run]] ne "100%"} {
        fail "$run failed ([get_property STATUS [get_runs $run]]): see [get_property DIRECTORY [get_runs $run]]/runme.log"
    }
}

file mkdir $out_dir
open_run impl_1
report_timing_summary -file [file join $out_dir timing.txt]
report_utilization -file [file join $out_dir utilization.txt]
set wns [get_property SLACK [get_timing_paths -delay_type max -max_paths 1 -nworst 1]]
set whs [get_property SLACK [get_timing_paths -delay_type min -max_paths 1 -nworst 1]]
if {$wns < 0 || $whs < 0} {
    fail "timing not met at $actual_mhz MHz (setup WNS $wns ns, hold WHS $whs ns; $out_dir/timing.txt): rebuild at a lower clock, e.g. `make bitstream CLOCK_MHZ=90.909`"
}

set impl_dir [get_property DIRECTORY [get_runs impl_1]]
set bit [file join $impl_dir [get_property TOP [current_fileset]].bit]
if {![file isfile $bit]} {
    fail "no bitstream at $bit after write_bitstream"
}
# the hardware handoff: <project>.gen/... since Vivado 2020.2 (<project>.srcs/... before); newest wins
set hwh ""
foreach candidate [glob -nocomplain [file join $build_dir * sources_1 bd $bd_name hw_handoff $bd_name.hwh]] {
    if {$hwh eq "" || [file mtime $candidate] > [file mtime $hwh]} {
        set hwh $candidate
    }
}
if {$hwh eq ""} {
    fail "no $bd_name.hwh under $build_dir/*/sources_1/bd/$bd_name/hw_handoff after generate_target"
}
file copy -force $bit [file join $out_dir radix.bit]
file copy -force $hwh [file join $out_dir radix.hwh]
note "wrote [file join $out_dir radix.bit] and radix.hwh (FCLK_CLK0 $actual_mhz MHz, setup WNS $wns ns)"
