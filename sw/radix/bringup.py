"""A board bring-up session of the bus-master engine (engine version 13) as one JSON record, and
its replay check (boards/pynq_z2/README.md §6).

On the board, after the checklist's steps::

    python3 -m radix.bringup --overlay radix.bit --program lenet5.radix --data lenet5-test.npz \\
        --batch 10 -o bring-up-$(date +%F).json

runs the engine checks, then the program, and writes what they produced:

* the engine's ID, VERSION and build registers, and the clock;
* ``checks`` (:func:`engine_checks`, on the transport alone: ``radix.placement`` lays out a tiny
  one-layer program, the registers start it): the list completes (STATUS.DONE, every command
  done, the output bit-exact with the golden model, the beats moved those of the reference bus
  engine); a command with a bad opcode is refused (STATUS.ERROR, ERR_CODE ``OPCODE``, nothing
  done); a window one page short is refused at the first burst beyond it (ERR_CODE ``WINDOW``,
  ERR_ADDR the reference's); CTRL.RESET leaves the engine idle;
* the program on the images, a batch per START (:func:`radix.runner.run_images`: every layer of
  every image compared with the golden model), each image's prediction, and the timing (engine
  cycles, host time and register accesses per image, wall-clock time).

Copy the file into ``boards/pynq_z2/bring-up/`` of the repository: ``tests/test_bringup.py``
replays every record there through :func:`replay`, which checks it against this repository's
engine (register map, version, build parameters, the clocks the PS can make) and against itself.

``--backend reference`` makes the same record from the reference bus engine on the host
(:class:`radix.command_exec.ReferenceBusTransport`): the repository's sample
(``sample-reference.json``) is one, labelled ``SAMPLE`` in ``source``; its cycles are the
analytic model's, not measurements. Numpy only; pynq only for ``--backend pynq``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__, golden, network, ops, runner
from .command_exec import execute
from .datasets import load_split
from .engine_spec import (BUS_BYTES, BUS_ENGINE_VERSION, BUS_REGISTERS, ENGINE_ID, ERROR_CODE,
                          EngineConfig, build_value, bus_register, encode_command, field_mask_of)
from .overlay import ClockError, check_fclk_mhz
from .placement import place
from .program import INPUT, Layer, Program

FORMAT = "radix-bring-up/2"  # 2: engine version 5 (the bus master); 1 was engine version 4's
SAMPLE_SOURCE = "SAMPLE: made on the host's reference backend, not on a board; cycles are the analytic model's"
BOARD_SOURCE = "board: PYNQ-Z2 through radix.pynq_transport"
RELATIVE = 1e-9  # float agreement of recomputed figures
CHECK_BUDGET_CYCLES = 10_000_000  # every check's list is tiny: 0.1 s at 100 MHz (at least the transport's floor)
TINY_SEED = 5
PAGE = 4096

_DONE, _ERROR = field_mask_of("STATUS", "DONE"), field_mask_of("STATUS", "ERROR")
_BUSY = field_mask_of("STATUS", "BUSY")


def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_build(transport) -> tuple[dict, EngineConfig]:
    """The read-only registers by name, and the engine configuration the build registers make."""
    registers = {reg.name: transport.read(reg.offset) for reg in BUS_REGISTERS if reg.access == "ro"}
    params = {reg.build: registers[reg.name] for reg in BUS_REGISTERS if reg.build and reg.build != "acc_width"}
    return registers, EngineConfig(**params)


def tiny_program(config: EngineConfig) -> Program:
    """One 3x3 convolution (padding 1, ReLU, 2x2 pooling) of ``rows + 1`` channels to ``cols + 1``
    on a 6x6 map: two input and two output tiles, a handful of bursts, fixed weights."""
    rng = np.random.default_rng(TINY_SEED)
    lo, hi = golden.int_range(config.width)
    c_in, c_out, size, k = config.rows + 1, config.cols + 1, 6, 3
    shift = runner.natural_shift(config.width, c_in * k * k)
    layer = Layer(name="tiny", kind=ops.CONVOLUTION.kind, modules=[], in_shape=(c_in, size, size), out_shape=(c_out, size // 2, size // 2),
                  kernel=k, stride=1, padding=(1, 1, 1, 1), relu=True, pool=True, fl_in=0, fl_w=[0], fl_out=-shift,
                  weight_bits=config.width, weights=rng.integers(lo, hi + 1, (c_out, c_in, k, k)),
                  bias=rng.integers(-(1 << 10), 1 << 10, c_out), inputs=[INPUT])
    return Program(width=config.width, input_shape=(c_in, size, size), input_fl=0, layers=[layer])


def _start(transport, *, cmd_base: int, count: int, win_base: int, win_size: int) -> dict:
    """Set the list and the window, START, wait; the status and error registers after it."""
    for name, value in (("CMD_BASE", cmd_base), ("CMD_COUNT", count), ("WIN_BASE", win_base),
                        ("WIN_SIZE", win_size), ("STATUS", _DONE | _ERROR), ("CTRL", field_mask_of("CTRL", "START"))):
        transport.write(bus_register(name).offset, value)
    finished = transport.wait_done(CHECK_BUDGET_CYCLES)
    state = {name.lower(): transport.read(bus_register(name).offset)
             for name in ("STATUS", "CMD_DONE", "ERR_CODE", "ERR_INDEX", "ERR_ADDR", "CYCLES", "BEATS_READ",
                          "BEATS_WRITTEN")}
    state["finished"] = bool(finished)
    return state


def engine_checks(transport, config: EngineConfig) -> dict:
    """The engine on a tiny command list, through the transport alone (see the module docstring)."""
    program = tiny_program(config)
    base = transport.allocate(place(program, config).memory_bytes)
    placement = place(program, config, base=base)
    x = np.random.default_rng(TINY_SEED + 1).integers(*golden.int_range(config.width), (1,) + program.input_shape)
    x = np.clip(x, *golden.tensor_range(config.width, unsigned=False))
    offset, words = placement.input_words(x)
    image = placement.memory.copy()
    image[offset // BUS_BYTES: offset // BUS_BYTES + words.size] = words
    transport.write_memory(0, image)
    window = {"cmd_base": placement.cmd_base, "count": placement.cmd_count, "win_base": base,
              "win_size": placement.memory_bytes}

    def reference(memory, **changes) -> dict:
        args = dict(window, **changes)
        result = execute(memory.copy(), cmd_base=args["cmd_base"], cmd_count=args["count"], win_base=args["win_base"],
                         win_size=args["win_size"], config=config, base=base)
        return {"done": result.done, "err_code": result.error, "err_index": result.error_index,
                "err_addr": result.error_addr, "cmd_done": result.commands_done, "beats_read": result.beats_read,
                "beats_written": result.beats_written}

    checks = {}
    # 1. the list completes, bit-exact, moving the reference's beats
    state = _start(transport, **window)
    memory = transport.read_memory(0, placement.memory_bytes // BUS_BYTES)
    got = placement.tensor(memory, "tiny", 0)
    expected = network.run(program, x)[-1]
    checks["list"] = {**state, "cmd_count": placement.cmd_count, "bit_exact": bool(np.array_equal(got, expected.values[0])),
                      "reference": reference(image)}
    transport.reset()
    # 2. a bad opcode: refused before the command starts
    command = placement.commands[0]
    bad = np.array(encode_command(**dict(command.fields, opcode=0)), dtype=np.uint64)
    transport.write_memory(placement.cmd_base - base, bad)
    checks["opcode"] = {**_start(transport, **window), "expected_code": ERROR_CODE["OPCODE"]}
    transport.write_memory(placement.cmd_base - base, np.array(encode_command(**command.fields), dtype=np.uint64))
    transport.reset()
    # 3. a window one page short of the buffer: the first burst beyond it is refused
    short = dict(window, win_size=placement.memory_bytes - PAGE)
    checks["window"] = {**_start(transport, **short), "expected": reference(image, win_size=short["win_size"])}
    # 4. CTRL.RESET leaves the engine idle
    transport.reset()
    checks["reset"] = {"status": transport.read(bus_register("STATUS").offset)}
    return checks


def record_session(transport, *, program_path: str, data: str, images: int, clock_mhz: float, batch: int = 1,
                   tick=None) -> dict:
    """The checklist's steps on ``transport``, as a record (see the module docstring)."""
    registers, config = read_build(transport)
    checks = engine_checks(transport, config)
    program = Program.load(program_path)
    x, y = load_split(data, "test")
    x, y = x[:images], y[:images]
    run = runner.run_images(transport, program, x, y, batch=batch, clock_mhz=clock_mhz, tick=tick)
    return {
        "format": FORMAT,
        "source": SAMPLE_SOURCE if transport.name == "reference" else BOARD_SOURCE,
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": {"radix": __version__, "python": platform.python_version(), "numpy": np.__version__,
                     "pynq": _pynq_version(), "machine": platform.machine()},
        "backend": transport.name,
        "clock_mhz": clock_mhz,
        "registers": registers,
        "config": config.as_dict(),
        "checks": checks,
        "diagnostics": transport.diagnostics(),
        "program": {"file": Path(program_path).name, "sha256": _sha256(program_path), "width": program.width,
                    "layers": [layer.name for layer in program.layers]},
        "data": {"file": Path(data).name, "images": int(len(y)), "labels": [int(v) for v in y]},
        "run": {key: run[key] for key in ("images", "batch", "accuracy", "reference_accuracy", "bit_exact",
                                          "mismatched_images", "first_mismatch", "cycles", "per_image",
                                          "saturated_per_layer", "estimate")},
        "predictions": _predictions(transport, program, x, batch),
        "timing": {"wall_seconds": run["wall_seconds"],
                   "images_per_s_wall": round(len(y) / run["wall_seconds"], 3) if run["wall_seconds"] else None},
    }


def _predictions(transport, program: Program, x, batch: int) -> list[int]:
    """The engine's class for each image: a second pass, after the run compared every layer."""
    from .driver import Driver

    driver = Driver(transport)
    loaded = driver.load(program, batch=batch)
    x_q = network.quantize_input(program, x)
    out = []
    for first in range(0, len(x_q), batch):
        out += [int(v) for v in network.predict(driver.run(loaded, x_q[first:first + batch]).logits)]
    return out


def _pynq_version() -> str | None:
    try:
        import pynq
    except ImportError:
        return None
    return pynq.__version__


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=RELATIVE, abs_tol=RELATIVE)


def replay(record: dict) -> list[str]:
    """What is wrong with a bring-up record, as sentences; ``[]`` when it holds up."""
    problems = []
    if record.get("format") != FORMAT:
        return [f"format {record.get('format')!r}, this repository reads {FORMAT!r}"]
    registers = record["registers"]
    if registers.get("ID") != ENGINE_ID:
        problems.append(f"ID reads 0x{registers.get('ID', 0):08X}, a Radix engine reads 0x{ENGINE_ID:08X}")
    if registers.get("VERSION") != BUS_ENGINE_VERSION:
        problems.append(f"VERSION {registers.get('VERSION')}: this repository's bus-master engine is version "
                        f"{BUS_ENGINE_VERSION}")
    try:
        config = EngineConfig(**record["config"])
    except (TypeError, ValueError) as exc:
        return problems + [f"config {record['config']} is not an engine configuration: {exc}"]
    for reg in BUS_REGISTERS:
        expected = build_value(reg, config)
        if reg.access == "ro" and expected is not None and registers.get(reg.name) != expected:
            problems.append(f"register {reg.name} reads {registers.get(reg.name)}, the config says {expected}")
    try:
        check_fclk_mhz(record["clock_mhz"], what="the recorded clock")
    except ClockError as exc:
        problems.append(str(exc))
    problems += _replay_checks(record["checks"])
    problems += _replay_run(record)
    return problems


def _replay_checks(checks: dict) -> list[str]:
    problems = []
    done = checks["list"]
    if not (done["finished"] and done["status"] == _DONE and done["cmd_done"] == done["cmd_count"]):
        problems.append(f"checks: the tiny list did not complete: STATUS={done['status']}, CMD_DONE={done['cmd_done']} "
                        f"of {done['cmd_count']}, ERR_CODE={done['err_code']}")
    if not done["bit_exact"]:
        problems.append("checks: the tiny list's output differs from the golden model")
    ref = done["reference"]
    if (done["beats_read"], done["beats_written"]) != (ref["beats_read"], ref["beats_written"]):
        problems.append(f"checks: the tiny list moved {done['beats_read']} beats in and {done['beats_written']} out, "
                        f"the reference bus engine {ref['beats_read']} and {ref['beats_written']}")
    bad = checks["opcode"]
    if not (bad["status"] == _ERROR and bad["err_code"] == bad["expected_code"] == ERROR_CODE["OPCODE"]
            and bad["err_index"] == 0 and bad["cmd_done"] == 0):
        problems.append(f"checks: a bad opcode gave STATUS={bad['status']}, ERR_CODE={bad['err_code']}, "
                        f"ERR_INDEX={bad['err_index']}, CMD_DONE={bad['cmd_done']}; expected ERROR, OPCODE, 0, 0")
    window, expected = checks["window"], checks["window"]["expected"]
    if not (window["status"] == _ERROR and window["err_code"] == expected["err_code"] == ERROR_CODE["WINDOW"]
            and window["err_addr"] == expected["err_addr"] and window["err_index"] == expected["err_index"]):
        problems.append(f"checks: a short window gave STATUS={window['status']}, ERR_CODE={window['err_code']}, "
                        f"ERR_INDEX={window['err_index']}, ERR_ADDR=0x{window['err_addr']:08X}; the reference "
                        f"ERR_CODE={expected['err_code']}, ERR_INDEX={expected['err_index']}, "
                        f"ERR_ADDR=0x{expected['err_addr']:08X}")
    if checks["reset"]["status"] & (_BUSY | _DONE | _ERROR):
        problems.append(f"checks: STATUS={checks['reset']['status']} after CTRL.RESET, expected idle (0)")
    return problems


def _replay_run(record: dict) -> list[str]:
    problems = []
    run, labels, predictions = record["run"], record["data"]["labels"], record["predictions"]
    if not run["bit_exact"] or run["mismatched_images"]:
        problems.append(f"run: {run['mismatched_images']} images differ from the reference: {run['first_mismatch']}")
    if not (run["images"] == len(labels) == len(predictions) == record["data"]["images"]):
        problems.append(f"run: {run['images']} images, {len(labels)} labels, {len(predictions)} predictions")
    else:
        accuracy = float(np.mean(np.asarray(predictions) == np.asarray(labels)))
        if not _close(accuracy, run["accuracy"]):
            problems.append(f"run: accuracy {run['accuracy']}, the predictions and labels give {accuracy}")
    if not _close(run["accuracy"], run["reference_accuracy"]):
        problems.append(f"run: accuracy {run['accuracy']} differs from the reference's {run['reference_accuracy']}")
    cycles = run["cycles"]
    expected_source = "analytic model" if record["backend"] == "reference" else "measured"
    if cycles["source"] != expected_source:
        problems.append(f"cycles come from {cycles['source']!r}, a {record['backend']} record's from {expected_source!r}")
    layers = sum(cycles["per_layer_mean"].values())
    if not cycles["per_image_mean"] > 0 or layers > cycles["per_image_mean"] * (1 + RELATIVE):
        problems.append(f"cycles: the layers' {layers} per image exceed the {cycles['per_image_mean']} from START "
                        f"to DONE")
    if set(cycles["per_layer_mean"]) != set(record["program"]["layers"]):
        problems.append("cycles: the layers are not the program's")
    estimate = run["estimate"]
    if not _close(estimate["images_per_s"], record["clock_mhz"] * 1e6 / cycles["per_image_mean"]):
        problems.append(f"estimate: {estimate['images_per_s']} images/s is not {record['clock_mhz']} MHz over "
                        f"{cycles['per_image_mean']} cycles")
    timing = record["timing"]
    if not timing["wall_seconds"] > 0 or not _close(timing["images_per_s_wall"],
                                                    round(run["images"] / timing["wall_seconds"], 3)):
        problems.append(f"timing: {timing}")
    return problems


def dumps(record: dict) -> str:
    """The record as indented JSON, with its lists of numbers on one line each."""
    text = json.dumps(record, indent=1)
    return re.sub(r"\[([\s\d,.-]+)\]", lambda m: "[" + ", ".join(v.strip() for v in m[1].split(",")) + "]", text) + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 -m radix.bringup", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("pynq", "reference"), default="pynq")
    parser.add_argument("--overlay", default="radix.bit", help="pynq: the overlay's .bit (its .hwh beside it)")
    parser.add_argument("--program", required=True, help="the .radix program (lenet5.radix)")
    parser.add_argument("--data", required=True, help="the .npz of test images (lenet5-test.npz)")
    parser.add_argument("--images", type=int, default=1000, help="images for the accuracy step (default 1000)")
    parser.add_argument("--batch", type=int, default=10, help="images per START (default 10)")
    parser.add_argument("-o", "--output", required=True, help="the JSON record to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 when the record replays clean)."""
    args = _parser().parse_args(argv)
    for name in ("images", "batch"):
        if getattr(args, name) < 1:
            print(f"python3 -m radix.bringup: error: --{name} {getattr(args, name)} must be at least 1", file=sys.stderr)
            return 2
    if args.backend == "pynq":
        from .pynq_transport import PynqBusTransport

        transport = PynqBusTransport(args.overlay)
        clock = transport.clock_mhz
    else:
        from .command_exec import ReferenceBusTransport

        transport, clock = ReferenceBusTransport(), 100.0
    try:
        record = record_session(transport, program_path=args.program, data=args.data, images=args.images,
                                clock_mhz=clock, batch=args.batch)
    finally:
        transport.close()
    Path(args.output).write_text(dumps(record))
    problems = replay(record)
    checks = record["checks"]
    print(f"wrote {args.output}: engine checks: list {'done' if checks['list']['status'] == _DONE else 'NOT done'}, "
          f"bad opcode -> ERR_CODE {checks['opcode']['err_code']}, short window -> ERR_CODE "
          f"{checks['window']['err_code']}; {record['run']['images']} images in batches of {args.batch}, "
          f"top-1 {100 * record['run']['accuracy']:.2f}%; "
          + ("replays clean" if not problems else "does not replay: " + "; ".join(problems)))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
