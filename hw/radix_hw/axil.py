"""AXI4-Lite slave register file, generated from a register table (``radix.engine_spec.BUS_REGISTERS``).

Every offset, access type and bit field comes from the table; nothing here names an address.

Behaviour beyond the table (also stated in ``docs/registers.md``):

* Addresses are word addresses: the two low address bits are ignored. An unmapped address reads
  0 and a write to it is ignored; both answer ``OKAY`` (the register file never returns an error
  response). ``AxPROT`` is ignored.
* ``WSTRB`` selects the bytes a write changes: in the ``cfg`` registers, and a CTRL or STATUS
  bit acts only when its byte is strobed.
* Writing ``CTRL.START = 1`` while ``STATUS.BUSY`` is set is ignored. An accepted START clears
  ``STATUS.DONE`` and ``STATUS.ERROR``.
* Writing ``CTRL.RESET = 1`` pulses ``soft_reset`` for one cycle, the cycle after the write, and
  clears ``STATUS.DONE`` and ``STATUS.ERROR``; a START in the same write is ignored. The ``cfg``
  registers and ``CTRL.IRQ_EN`` (written as usual by the same write) are kept: the register file
  itself is not reset.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from radix.engine_spec import EngineConfig, Register, build_value

ADDR_WIDTH = 12
DATA_WIDTH = 32
STRB_WIDTH = DATA_WIDTH // 8
RESP_OKAY = 0b00


def axi_lite_members(*, addr_width: int = ADDR_WIDTH) -> dict:
    """Signature members of an AXI4-Lite slave port, flat and named as Vivado infers them."""
    return {
        "s_axi_awaddr": In(addr_width),
        "s_axi_awprot": In(3),
        "s_axi_awvalid": In(1),
        "s_axi_awready": Out(1),
        "s_axi_wdata": In(DATA_WIDTH),
        "s_axi_wstrb": In(STRB_WIDTH),
        "s_axi_wvalid": In(1),
        "s_axi_wready": Out(1),
        "s_axi_bresp": Out(2),
        "s_axi_bvalid": Out(1),
        "s_axi_bready": In(1),
        "s_axi_araddr": In(addr_width),
        "s_axi_arprot": In(3),
        "s_axi_arvalid": In(1),
        "s_axi_arready": Out(1),
        "s_axi_rdata": Out(DATA_WIDTH),
        "s_axi_rresp": Out(2),
        "s_axi_rvalid": Out(1),
        "s_axi_rready": In(1),
    }


def live_registers(registers: tuple[Register, ...]) -> tuple[Register, ...]:
    """The ``ro`` registers without a build value: each is an input port of its lower-case name."""
    return tuple(reg for reg in registers if reg.access == "ro" and reg.value is None and reg.build is None)


def _check_register_map(config: EngineConfig, registers: tuple[Register, ...]) -> None:
    """Refuse a register table this file cannot implement, naming the register."""
    seen: dict[int, str] = {}
    for reg in registers:
        if reg.offset % STRB_WIDTH or not 0 <= reg.offset < 1 << ADDR_WIDTH:
            raise ValueError(f"register {reg.name} offset 0x{reg.offset:X} is not a word address below 0x{1 << ADDR_WIDTH:X}")
        if reg.offset in seen:
            raise ValueError(f"registers {seen[reg.offset]} and {reg.name} share offset 0x{reg.offset:X}")
        seen[reg.offset] = reg.name
        if reg.access == "ro":
            value = build_value(reg, config)
            if value is not None and not 0 <= value < 1 << DATA_WIDTH:
                raise ValueError(f"register {reg.name} value {value} does not fit {DATA_WIDTH} bits")
        elif reg.access not in ("ctrl", "status", "cfg"):
            raise ValueError(f"register {reg.name} has unknown access {reg.access!r}")


def _single(registers: tuple[Register, ...], reg_access: str) -> Register:
    matches = [reg for reg in registers if reg.access == reg_access]
    if len(matches) != 1:
        raise ValueError(f"the register table needs exactly one {reg_access!r} register, has {len(matches)}")
    return matches[0]


def _bit(reg: Register, field: str) -> int | None:
    """The bit of ``field`` in ``reg``, None if the register has no such field."""
    for fld in reg.fields:
        if fld.name == field:
            return fld.offset
    return None


class RegisterFile(wiring.Component):
    """An engine's AXI4-Lite register file for one :class:`EngineConfig` and register table.

    Ports: the ``s_axi_*`` slave (:func:`axi_lite_members`); ``start`` (one-cycle pulse),
    ``irq_en`` (CTRL.IRQ_EN), ``done`` (sticky STATUS.DONE), ``soft_reset`` (one-cycle pulse after
    a CTRL.RESET write); inputs ``busy`` (STATUS.BUSY) and ``job_done`` (a pulse that sets
    STATUS.DONE). Per the table: with a STATUS.ERROR field, ``error`` (sticky) and ``error_set`` (a pulse that
    sets it); each ``cfg`` register an output ``cfg_<name>`` (32 bits, read back as written); each
    live ``ro`` register (no build value) an input of its lower-case name, read as it is.

    Each channel has a one-entry holding register: AW and W are accepted independently and in any
    order, a write takes effect when both are held and B is free, B and R wait for their ready.
    """

    def __init__(self, *, config: EngineConfig, registers: tuple[Register, ...]):
        if not isinstance(config, EngineConfig):
            raise TypeError(f"config must be an EngineConfig, not {type(config).__name__}")
        _check_register_map(config, registers)
        self._config = config
        self._registers = registers
        self._ctrl = _single(registers, "ctrl")
        self._status = _single(registers, "status")
        self._has_error = _bit(self._status, "ERROR") is not None
        members = {
            **axi_lite_members(),
            "start": Out(1),
            "soft_reset": Out(1),
            "irq_en": Out(1),
            "done": Out(1),
            "busy": In(1),
            "job_done": In(1),
        }
        if self._has_error:
            members.update({"error": Out(1), "error_set": In(1)})
        members.update({f"cfg_{reg.name.lower()}": Out(DATA_WIDTH) for reg in registers if reg.access == "cfg"})
        members.update({reg.name.lower(): In(DATA_WIDTH) for reg in live_registers(registers)})
        super().__init__(members)

    @property
    def config(self) -> EngineConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        ctrl, status = self._ctrl, self._status
        start_bit, irq_bit, reset_bit = _bit(ctrl, "START"), _bit(ctrl, "IRQ_EN"), _bit(ctrl, "RESET")
        busy_bit, done_bit, error_bit = _bit(status, "BUSY"), _bit(status, "DONE"), _bit(status, "ERROR")
        bits = (start_bit, irq_bit, reset_bit, done_bit, error_bit)

        # Write channel: AW and W each land in a holding register, the write fires when both are full.
        aw_full, aw_addr = Signal(), Signal(ADDR_WIDTH)
        w_full, w_data, w_strb = Signal(), Signal(DATA_WIDTH), Signal(STRB_WIDTH)
        m.d.comb += [
            self.s_axi_awready.eq(~aw_full),
            self.s_axi_wready.eq(~w_full),
            self.s_axi_bresp.eq(RESP_OKAY),
        ]
        with m.If(self.s_axi_awvalid & ~aw_full):
            m.d.sync += [aw_full.eq(1), aw_addr.eq(self.s_axi_awaddr)]
        with m.If(self.s_axi_wvalid & ~w_full):
            m.d.sync += [w_full.eq(1), w_data.eq(self.s_axi_wdata), w_strb.eq(self.s_axi_wstrb)]
        with m.If(self.s_axi_bvalid & self.s_axi_bready):
            m.d.sync += self.s_axi_bvalid.eq(0)

        write = Signal()
        m.d.comb += write.eq(aw_full & w_full & ~self.s_axi_bvalid)
        m.d.sync += [self.start.eq(0), self.soft_reset.eq(0)]
        with m.If(write):
            m.d.sync += [aw_full.eq(0), w_full.eq(0), self.s_axi_bvalid.eq(1)]
            with m.Switch(aw_addr[2:]):
                for reg in self._registers:
                    with m.Case(reg.offset >> 2):
                        self._write(m, reg, w_data, w_strb, bits)

        with m.If(self.job_done):
            m.d.sync += self.done.eq(1)
        if self._has_error:
            with m.If(self.error_set):
                m.d.sync += self.error.eq(1)
        # the core resets on the edge after the pulse: a job finishing meanwhile leaves no DONE
        with m.If(self.soft_reset):
            m.d.sync += self.done.eq(0)

        # Read channel: AR is taken only while R is empty, so R holds one response at a time.
        m.d.comb += [self.s_axi_arready.eq(~self.s_axi_rvalid), self.s_axi_rresp.eq(RESP_OKAY)]
        with m.If(self.s_axi_arvalid & ~self.s_axi_rvalid):
            m.d.sync += [self.s_axi_rvalid.eq(1), self.s_axi_rdata.eq(0)]
            with m.Switch(self.s_axi_araddr[2:]):
                for reg in self._registers:
                    with m.Case(reg.offset >> 2):
                        m.d.sync += self.s_axi_rdata.eq(
                            self._read_value(reg, busy_bit, done_bit, irq_bit, error_bit)
                        )
        with m.Elif(self.s_axi_rready):
            m.d.sync += self.s_axi_rvalid.eq(0)
        return m

    def _write(self, m, reg, data, strb, bits):
        start_bit, irq_bit, reset_bit, done_bit, error_bit = bits
        bit_enable = Cat(*(strb[bit // 8] for bit in range(DATA_WIDTH)))
        if reg.access == "cfg":
            held = getattr(self, f"cfg_{reg.name.lower()}")
            m.d.sync += held.eq((held & ~bit_enable) | (data & bit_enable))
        elif reg.access == "ctrl":
            with m.If(strb[irq_bit // 8]):
                m.d.sync += self.irq_en.eq(data[irq_bit])
            with m.If(strb[reset_bit // 8] & data[reset_bit]):
                m.d.sync += [self.soft_reset.eq(1), self.done.eq(0)]
                if self._has_error:
                    m.d.sync += self.error.eq(0)
            with m.Elif(strb[start_bit // 8] & data[start_bit] & ~self.busy):
                m.d.sync += [self.start.eq(1), self.done.eq(0)]
                if self._has_error:
                    m.d.sync += self.error.eq(0)
        elif reg.access == "status":
            with m.If(strb[done_bit // 8] & data[done_bit]):
                m.d.sync += self.done.eq(0)
            if self._has_error:
                with m.If(strb[error_bit // 8] & data[error_bit]):
                    m.d.sync += self.error.eq(0)

    def _read_value(self, reg, busy_bit, done_bit, irq_bit, error_bit):
        if reg.access == "cfg":
            return getattr(self, f"cfg_{reg.name.lower()}")
        if reg.access == "ctrl":
            return self.irq_en << irq_bit  # START and RESET are pulses and read 0
        if reg.access == "status":
            value = (self.busy << busy_bit) | (self.done << done_bit)
            if self._has_error:
                value = value | (self.error << error_bit)
            return value
        constant = build_value(reg, self._config)
        if constant is not None:
            return Const(constant, DATA_WIDTH)
        return getattr(self, reg.name.lower())
