"""A board bring-up session as one JSON record, and its replay check (boards/pynq_z2/README.md §6).

On the board, after the checklist's steps::

    python3 -m radix.bringup --overlay radix.bit --program lenet5.radix --data lenet5-test.npz \\
        -o bring-up-$(date +%F).json

runs the same steps again through the driver and writes what they produced: the engine's ID,
VERSION and build registers, the clock, a self-test, one image layer by layer, the program's
accuracy on the images, and the timing (engine cycles and host wall-clock time). Copy the file
into ``boards/pynq_z2/bring-up/`` of the repository: ``tests/test_board_runtime.py`` replays
every record there through :func:`replay`, which checks it against this repository's engine
(register map, build parameters, the clocks the PS can make) and against itself (predictions
against labels, accuracy, bit-exactness, cycle and images/s arithmetic).

``--backend reference`` makes the same record from the reference backend on the host: the
repository's sample (``sample-reference.json``) is one, labelled ``SAMPLE`` in ``source``; its
cycles are the analytic model's, not measurements. Numpy only; pynq only for ``--backend pynq``.
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

from . import __version__, network, runner
from .datasets import load_split
from .driver import Driver
from .engine_spec import ENGINE_ID, ENGINE_VERSION, REGISTERS, EngineConfig, build_value
from .overlay import ClockError, check_fclk_mhz
from .program import Program

FORMAT = "radix-bring-up/1"
SAMPLE_SOURCE = "SAMPLE: made on the host's reference backend, not on a board; cycles are the analytic model's"
BOARD_SOURCE = "board: PYNQ-Z2 through radix.pynq_transport"
SELFTEST_SEED, SELFTEST_COUNT = 0, 20
RELATIVE = 1e-9  # float agreement of recomputed figures


def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def record_session(transport, *, program_path: str, data: str, images: int, clock_mhz: float,
                   seed: int = SELFTEST_SEED, count: int = SELFTEST_COUNT, tick=None) -> dict:
    """The checklist's steps 2-6 on ``transport``, as a record (see the module docstring)."""
    registers = {reg.name: transport.read(reg.offset) for reg in REGISTERS if reg.access == "ro"}
    driver = Driver(transport)  # refuses an engine of another ID or VERSION
    program = Program.load(program_path)
    driver.check(program)
    selftest = runner.selftest(transport, seed=seed, count=count)
    x, y = load_split(data, "test")
    x, y = x[:images], y[:images]
    first = driver.run_image(program, network.quantize_input(program, x[:1])[0])
    run = runner.run_images(transport, program, x, y, clock_mhz=clock_mhz, tick=tick)
    wall = run["wall_seconds"]  # the run's own wall-clock time, Python driver included
    return {
        "format": FORMAT,
        "source": SAMPLE_SOURCE if transport.name == "reference" else BOARD_SOURCE,
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": {"radix": __version__, "python": platform.python_version(), "numpy": np.__version__,
                     "pynq": _pynq_version(), "machine": platform.machine()},
        "backend": transport.name,
        "clock_mhz": clock_mhz,
        "registers": registers,
        "config": driver.config.as_dict(),
        "diagnostics": transport.diagnostics(),
        "program": {"file": Path(program_path).name, "sha256": _sha256(program_path), "width": program.width,
                    "layers": [layer.name for layer in program.layers]},
        "data": {"file": Path(data).name, "images": int(len(y)), "labels": [int(v) for v in y]},
        "selftest": {key: selftest[key] for key in ("seed", "layers", "mismatches")},
        "one_image": {"label": int(y[0]), "logits": [int(v) for v in first.logits],
                      "predicted": int(network.predict(first.logits[None])[0]),
                      "layer_cycles": {layer.name: layer.cycles for layer in first.layers}},
        "run": {key: run[key] for key in ("images", "accuracy", "reference_accuracy", "bit_exact",
                                          "mismatched_images", "first_mismatch", "cycles", "saturated_per_layer",
                                          "estimate")},
        "predictions": _predictions(transport, program, x),
        "timing": {"wall_seconds": round(wall, 3), "images_per_s_wall": round(len(y) / wall, 3) if wall else None},
    }


def _predictions(transport, program: Program, x) -> list[int]:
    """The engine's class for each image: a second pass, after the run compared every layer."""
    driver = Driver(transport)
    x_q = network.quantize_input(program, x)
    return [int(network.predict(driver.run_image(program, image).logits[None])[0]) for image in x_q]


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
    if registers.get("VERSION") != ENGINE_VERSION:
        problems.append(f"VERSION {registers.get('VERSION')}: this repository's engine is version {ENGINE_VERSION}")
    try:
        config = EngineConfig(**record["config"])
    except (TypeError, ValueError) as exc:
        return problems + [f"config {record['config']} is not an engine configuration: {exc}"]
    for reg in REGISTERS:
        expected = build_value(reg, config)
        if reg.access == "ro" and expected is not None and registers.get(reg.name) != expected:
            problems.append(f"register {reg.name} reads {registers.get(reg.name)}, the config says {expected}")
    try:
        check_fclk_mhz(record["clock_mhz"], what="the recorded clock")
    except ClockError as exc:
        problems.append(str(exc))
    selftest = record["selftest"]
    if selftest["mismatches"] or selftest["layers"] < 1:
        problems.append(f"self-test: {selftest['mismatches']} mismatches in {selftest['layers']} layers")
    first = record["one_image"]
    if first["predicted"] != int(np.argmax(first["logits"])):
        problems.append(f"one image: predicted {first['predicted']}, its logits say {int(np.argmax(first['logits']))}")
    problems += _replay_run(record)
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
    if predictions[:1] != [record["one_image"]["predicted"]]:
        problems.append("run: the first image's prediction differs from the one-image step's")
    cycles = run["cycles"]
    expected_source = "analytic model" if record["backend"] == "reference" else "measured"
    if cycles["source"] != expected_source:
        problems.append(f"cycles come from {cycles['source']!r}, a {record['backend']} record's from {expected_source!r}")
    if not _close(sum(cycles["per_layer_mean"].values()), cycles["per_image_mean"]):
        problems.append(f"cycles: the layers' {sum(cycles['per_layer_mean'].values())} do not add up to "
                        f"{cycles['per_image_mean']} per image")
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
    parser.add_argument("-o", "--output", required=True, help="the JSON record to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 when the record replays clean)."""
    args = _parser().parse_args(argv)
    if args.images < 1:
        print(f"python3 -m radix.bringup: error: --images {args.images} must be at least 1", file=sys.stderr)
        return 2
    if args.backend == "pynq":
        from .pynq_transport import PynqTransport

        transport = PynqTransport(args.overlay)
        clock = transport.clock_mhz
    else:
        from .transport import ReferenceTransport

        transport, clock = ReferenceTransport(), 100.0
    try:
        record = record_session(transport, program_path=args.program, data=args.data, images=args.images,
                                clock_mhz=clock)
    finally:
        transport.close()
    Path(args.output).write_text(dumps(record))
    problems = replay(record)
    print(f"wrote {args.output}: {record['run']['images']} images, top-1 {100 * record['run']['accuracy']:.2f}%, "
          f"self-test {record['selftest']['mismatches']} mismatches; "
          + ("replays clean" if not problems else "does not replay: " + "; ".join(problems)))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
