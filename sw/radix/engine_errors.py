"""Errors of a running engine, shared by the driver, the placement and the transports."""


class DriverError(RuntimeError):
    """The engine or the program cannot go on; the message names the layer, command and register."""


class EngineMismatch(DriverError):
    """The program needs something this engine build does not have."""


class EngineTimeout(DriverError):
    """The engine did not finish within its budget; the message carries a register dump."""


class EngineFault(DriverError):
    """The engine stopped a command list with STATUS.ERROR; the message names the command's layer,
    the reason (ERR_CODE) and the address at fault."""
