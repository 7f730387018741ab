"""What ``radix run`` and ``radix selftest`` do, given any transport (numpy only).

Both run through :class:`radix.driver.Driver` (a program loaded once, each batch from one START)
and compare every result with the golden model,
reporting the first divergence (layer, tensor, index, expected, got). They are plain blocking
functions of a transport, so the RTL simulation runs them unchanged inside the simulator
(``radix_sim.hostrun``) and the board runs them over PYNQ.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from . import golden, network, ops
from .cycle_model import list_cycles
from .driver import Driver, EngineMismatch
from .placement import place
from .engine_spec import EngineConfig
from .program import INPUT, Layer, Program

ESTIMATE_NOTE = "estimate: measured cycles at an assumed clock, not a timed measurement"


def first_difference(expected: np.ndarray, got: np.ndarray) -> dict | None:
    """The first index where two integer tensors differ, or None."""
    expected, got = np.asarray(expected), np.asarray(got)
    if expected.shape != got.shape:
        return {"index": None, "expected": list(expected.shape), "got": list(got.shape), "what": "shape"}
    wrong = np.argwhere(expected != got)
    if wrong.size == 0:
        return None
    index = tuple(int(i) for i in wrong[0])
    return {"index": list(index), "expected": int(expected[index]), "got": int(got[index]),
            "count": int(len(wrong))}


def run_images(transport, program: Program, x, y, *, batch: int = 1, clock_mhz: float = 100.0,
               tick: Callable[[], None] | None = None) -> dict:
    """Run float images ``x`` (labels ``y``) through the engine, ``batch`` images per START, and
    check every layer's output of every image bit for bit against the golden model.

    Per image it reports what the host and the bus cost (``host_ms``, ``register_accesses``,
    ``bytes_read``, ``bytes_written``: the batch's divided by its images) and ``engine_cycles``
    (START to DONE of the batch, divided alike).
    """
    driver = Driver(transport)
    loaded = driver.load(program, batch=batch)
    x_q = network.quantize_input(program, x)
    reference = network.run(program, x_q)
    names = [layer.name for layer in program.layers]
    correct = 0
    layer_cycles = dict.fromkeys(names, 0)
    layer_saturated = dict.fromkeys(names, 0)
    totals = {"engine_cycles": 0, "host_seconds": 0.0, "register_accesses": 0, "bytes_read": 0, "bytes_written": 0}
    mismatches = []
    started = time.perf_counter()
    for first in range(0, len(x_q), batch):
        run = driver.run(loaded, x_q[first:first + batch], keep_memory=True)
        for name, (cycles, saturated) in run.layer_stats().items():
            layer_cycles[name] += cycles
            layer_saturated[name] += saturated
        for key in totals:
            totals[key] += getattr(run, key)
        for b in range(run.images):
            image = first + b
            for want in reference:
                diff = first_difference(want.values[image], run.tensor(want.name, b))
                if diff:
                    mismatches.append({"image": image, "layer": want.name, "tensor": "output", **diff})
                    break
            correct += int(network.predict(run.logits[b][None])[0] == y[image])
            if tick:
                tick()
    wall = time.perf_counter() - started
    n = len(x_q)
    per_image = {key: (value / n if n else 0.0) for key, value in totals.items()}
    mean_cycles = per_image["engine_cycles"]
    return {
        "backend": transport.name,
        "images": n,
        "batch": batch,
        "accuracy": correct / n if n else 0.0,
        "reference_accuracy": float(np.mean(network.predict(reference[-1].values) == y)) if n else 0.0,
        "bit_exact": not mismatches,
        "mismatched_images": len(mismatches),
        "first_mismatch": mismatches[0] if mismatches else None,
        "cycles": {
            "source": "measured" if transport.measures_cycles else "analytic model",
            "per_image_mean": mean_cycles,
            "per_layer_mean": {name: float(c) / n if n else 0.0 for name, c in layer_cycles.items()},
        },
        # per image: the host's and the bus's cost of running it (the batch's, shared out)
        "per_image": {
            "engine_cycles": mean_cycles,
            "host_ms": per_image["host_seconds"] * 1e3,
            "register_accesses": per_image["register_accesses"],
            "bytes_read": per_image["bytes_read"],
            "bytes_written": per_image["bytes_written"],
        },
        # saturated outputs per image (docs/arithmetic.md §5), the mean over the images run
        "saturated_per_layer": {name: float(s) / n if n else 0.0 for name, s in layer_saturated.items()},
        # host wall-clock time, checking included: real on the board, simulation time on sim
        "wall_seconds": round(wall, 3),
        "estimate": {
            "clock_mhz": clock_mhz,
            "images_per_s": clock_mhz * 1e6 / mean_cycles if mean_cycles else None,
            "note": ESTIMATE_NOTE,
        },
    }


def natural_shift(width: int, reduction: int) -> int:
    """The data shift that brings a sum of ``reduction`` random W-bit products (about
    ``2W - 2 + log2(reduction)/2`` bits) back to about W bits: random test layers draw their
    shifts around it, so most outputs are in range and some saturate (docs/arithmetic.md §5)."""
    return width - 2 + int(math.log2(reduction)) // 2


# what the fuzz draws, and how often: each operation draws its own geometry and weights (radix.ops)
RANDOM_SHARES = ((ops.FULLY_CONNECTED, 0.2), (ops.AVERAGE_POOL, 0.12), (ops.GROUPED_CONVOLUTION, 0.136),
                 (ops.CONVOLUTION, 0.544))
RANDOM_OPERATIONS = tuple(operation for operation, _ in RANDOM_SHARES)


def random_layer(rng: np.random.Generator, config: EngineConfig, index: int, *,
                 operation: ops.Operation | None = None) -> tuple[Layer, np.ndarray, np.ndarray | None]:
    """A random layer within the engine's limits, with a random integer input image and, for a
    residual add, a random skip tensor (else None); of ``operation`` when given (one of
    :data:`RANDOM_OPERATIONS`).

    The operation is drawn with :data:`RANDOM_SHARES` and draws its own geometry and weights
    (:mod:`radix.ops`: rectangular kernels and strides, padding per side, grouped and depthwise
    convolutions, average pools, pooled classifiers); channel counts are chosen not to be
    multiples of the array, a third of the layers with at most ``rows / 2`` input channels (which
    the placement folds, and stores narrow where they fit a word, docs/engine.md); fl
    combinations range from left-shifting (negative data shift) to saturating ones; about a third
    of the layers that can take one add a skip tensor (:meth:`radix.ops.ResidualAdd.random_skip`).
    Each tensor is unsigned (§1) about as often as signed: the input, the skip tensor and the
    output (an unsigned output without a ReLU saturates its negative values to 0, §5), with
    values over the whole range of their signedness.
    """
    width = config.width
    unsigned_in, unsigned_skip, unsigned_out = (bool(u) for u in rng.random(3) < 0.5)
    c_in = int(rng.integers(1, 3 * config.rows + 2))
    if c_in > 2 * config.rows:  # a third of the layers have at most rows / 2 input channels: folded jobs
        c_in = 1 + (c_in - 1) % max(1, config.rows // 2)
    if operation is None:
        operation = RANDOM_OPERATIONS[int(rng.choice(len(RANDOM_OPERATIONS), p=[share for _, share in RANDOM_SHARES]))]
    drawn = operation.random_layer(rng, config, ops.Draw(c_in=c_in, weight_range=golden.int_range(width)))
    c_out = drawn.weights.shape[0]
    add = drawn.can_add and rng.random() < 0.35
    reduction = int(np.prod(drawn.weights.shape[1:]))
    if add and reduction > golden.max_reduction(add=True, unsigned_in=unsigned_in):
        add = False
    natural = natural_shift(width, reduction) + int(unsigned_in)  # an unsigned input carries one bit more
    shift = int(rng.choice([natural - 3, natural, natural + 2, -int(rng.integers(1, width + 1)), natural - width]))
    fl_in, fl_w = int(rng.integers(-2, width + 3)), int(rng.integers(-2, width + 3))
    acc_bits = config.acc_width
    bias = rng.integers(-(2 ** (acc_bits - 2)), 2 ** (acc_bits - 2), c_out) >> int(rng.integers(acc_bits // 2, acc_bits - 2))
    if drawn.zero_bias:
        bias = np.zeros(c_out, dtype=np.int64)
    x = rng.integers(*_endpoints(width, unsigned_in), drawn.in_shape)
    fl_skip, skip = None, None
    if add:
        skip_shift, skip = ops.RESIDUAL_ADD.random_skip(rng, width=width, unsigned=unsigned_skip, natural_shift=natural,
                                                        shape=drawn.skip_shape)
        fl_skip = fl_in + fl_w + skip_shift
    layer = Layer(name=f"random{index}", kind=drawn.kind, modules=[], in_shape=drawn.in_shape,
                  out_shape=drawn.out_shape, kernel=drawn.kernel, stride=drawn.stride, padding=drawn.padding,
                  relu=bool(rng.random() < 0.5), pool=drawn.pool, fl_in=fl_in, fl_w=[fl_w], fl_out=fl_in + fl_w - shift,
                  weight_bits=width, weights=drawn.weights, bias=bias, inputs=[INPUT, "skip"] if add else [INPUT],
                  fl_skip=fl_skip, role=drawn.role, unsigned_in=unsigned_in, unsigned_skip=add and unsigned_skip,
                  unsigned_out=unsigned_out, groups=drawn.groups)
    return layer, x, skip


def _endpoints(width: int, unsigned: bool) -> tuple[int, int]:
    """``(lo, hi + 1)`` of a tensor's range, for ``rng.integers``."""
    lo, hi = golden.tensor_range(width, unsigned=unsigned)
    return lo, hi + 1


def _single_layer_program(layer: Layer, width: int) -> Program:
    return Program(width=width, input_shape=layer.in_shape, input_fl=layer.fl_in, layers=[layer],
                   input_unsigned=layer.unsigned_in)


def _externals(layer: Layer, skip) -> dict:
    """A random layer's skip tensor, placed as an external tensor the host writes."""
    return {} if skip is None else {"skip": (tuple(np.asarray(skip).shape), layer.unsigned_skip)}


def fitting_layer(driver: Driver, rng: np.random.Generator, index: int, *, attempts: int = 1000,
                  operation: ops.Operation | None = None):
    """Draw random layers (of ``operation`` when given) until one fits the engine's buffers (small
    builds refuse large layers); returns ``(layer, input image, skip tensor or None)``."""
    for _ in range(attempts):
        layer, x, skip = random_layer(rng, driver.config, index, operation=operation)
        try:
            place(_single_layer_program(layer, driver.config.width), driver.config, externals=_externals(layer, skip))
        except EngineMismatch:
            continue
        return layer, x, skip
    raise EngineMismatch(f"no random layer fits this engine after {attempts} draws: {driver.config.as_dict()}")


def run_single(driver: Driver, layer: Layer, x, skip, *, order=None) -> tuple[np.ndarray, int, int]:
    """One layer as a one-command-list program: its output, CYCLES and saturated outputs (its
    jobs' stream orders from ``order``, as :func:`radix.placement.place` takes it)."""
    program = _single_layer_program(layer, driver.config.width)
    loaded = driver.load_with(program, externals=_externals(layer, skip), order=order)
    if skip is not None:
        offset, words = loaded.placement.input_words(np.asarray(skip)[None], name="skip")
        driver.transport.write_memory(offset, words)
    run = driver.run(loaded, np.asarray(x)[None], keep_memory=True)
    saturated = sum(sat for _, sat in run.layer_stats().values())
    return run.tensor(layer.name, 0), run.engine_cycles, saturated


def random_order(rng: np.random.Generator) -> Callable[[dict], dict]:
    """Stream orders drawn at random for each job (``place``'s ``order``): strips of 0 to 15 rows
    (none for a summed job), weights first or not, and an input the placement may load ahead
    (following the job before's writes) loaded ahead or not, so a self-test covers every order the engine takes, not only the ones
    the cycle model finds fastest."""
    def order(fields: dict) -> dict:
        strips = 0 if fields["sum_pool"] else int(rng.integers(0, 16))
        ahead = fields["input_ahead"] & int(rng.integers(0, 2))
        return {"strip_rows": strips, "weights_first": int(rng.integers(0, 2)), "input_ahead": ahead,
                "input_follows": fields["input_follows"] & ahead}
    return order


def selftest(transport, *, seed: int, count: int, tick: Callable[[], None] | None = None) -> dict:
    """``count`` random layers on the engine, each compared word for word with the golden model,
    its jobs in random stream orders (:func:`random_order`)."""
    driver = Driver(transport)
    rng = np.random.default_rng(seed)
    order = random_order(np.random.default_rng([seed, 1]))  # its own draws: the layers stay the seed's
    mismatches = []
    cycles = 0
    for index in range(count):
        layer, x, skip = fitting_layer(driver, rng, index)
        expected = network.run_layer(layer, x[None], width=driver.config.width,
                                     skip=None if skip is None else skip[None])
        got, got_cycles, got_saturated = run_single(driver, layer, x, skip, order=order)
        cycles += got_cycles
        diff = first_difference(expected.values[0], got)
        if diff:
            geometry = (f"{layer.role or layer.kind} in {layer.in_shape} k={'x'.join(map(str, layer.kernel))} "
                        f"S={'x'.join(map(str, layer.stride))} groups={layer.groups} "
                        f"padding={layer.padding} pool={layer.pool} shift={int(layer.shift[0])}"
                        + ("" if skip is None else f" add skip_shift={int(layer.skip_shift[0])}")
                        + "".join(f" {name}" for name in ("unsigned_in", "unsigned_skip", "unsigned_out")
                                  if getattr(layer, name)))
            mismatches.append({"layer": index, "description": geometry, "tensor": "output", **diff})
        elif got_saturated != expected.saturated:
            mismatches.append({"layer": index, "tensor": "SATURATED", "index": None,
                               "expected": expected.saturated, "got": got_saturated})
        if tick:
            tick()
    return {"backend": transport.name, "seed": seed, "layers": count, "mismatches": len(mismatches),
            "details": mismatches, "cycles": cycles, "engine": driver.config.as_dict()}


def run_files(transport, *, program: str, data: str, images: int | None = None, batch: int = 1,
              clock_mhz: float = 100.0, tick: Callable[[], None] | None = None) -> dict:
    """:func:`run_images` on a program file and the evaluation images of a data set (JSON-friendly)."""
    from .datasets import load_split, subset

    loaded = Program.load(program)
    x, y = load_split(data, "test")
    x, y = subset(x, y, images)
    result = run_images(transport, loaded, x, y, batch=batch, clock_mhz=clock_mhz, tick=tick)
    result.update(program=program, data=data)
    return result


def layer_program(spec: dict, width: int, rng: np.random.Generator) -> Program:
    """A one-layer program of the geometry ``spec`` (see :func:`measure_layers`) with random
    W-bit weights and biases and a shift that keeps the outputs in range."""
    lo, hi = golden.int_range(width)
    k = spec.get("kernel", 1)
    if spec["kind"] == "conv":
        in_shape = (spec["c_in"], spec["size"], spec["size"])
        weights = rng.integers(lo, hi + 1, (spec["c_out"], spec["c_in"], k, k))
        size = golden.conv_output_size(spec["size"], k, spec["stride"], spec["pad"])
        out_shape = (spec["c_out"], size // 2, size // 2) if spec["pool"] else (spec["c_out"], size, size)
    else:
        in_shape, weights, out_shape = (spec["c_in"],), rng.integers(lo, hi + 1, (spec["c_out"], spec["c_in"])), (spec["c_out"],)
    shift = natural_shift(width, int(np.prod(weights.shape[1:])))
    layer = Layer(name=spec["name"], kind=spec["kind"], modules=[], in_shape=in_shape, out_shape=out_shape,
                  kernel=k, stride=spec.get("stride", 1), padding=golden.padding4(spec.get("pad", 0)), relu=True,
                  pool=spec.get("pool", False), fl_in=0, fl_w=[shift], fl_out=0, weight_bits=width,
                  weights=weights, bias=rng.integers(-1000, 1000, spec["c_out"]), inputs=[INPUT])
    return Program(width=width, input_shape=in_shape, input_fl=0, layers=[layer])


def measure_layers(transport, *, layers: list[dict], seed: int = 0) -> list[dict]:
    """Run layers of the given geometry with random data; report cycles and bit-exactness.

    Each entry of ``layers`` has ``name``, ``kind`` ("conv"/"fc"), ``c_in``, ``c_out`` and, for
    convolutions, ``size`` (input height = width), ``kernel``, ``stride``, ``pad``, ``pool``.
    """
    driver = Driver(transport)
    width = driver.config.width
    lo, hi = golden.int_range(width)
    rng = np.random.default_rng(seed)
    results = []
    for spec in layers:
        program = layer_program(spec, width, rng)
        layer = program.layers[0]
        x = rng.integers(lo, hi + 1, layer.in_shape)
        expected = network.run(program, x[None])[0]
        got, cycles, _ = run_single(driver, layer, x, None)
        commands = place(program, driver.config).commands
        results.append({
            "name": spec["name"], "macs": layer.macs, "cycles": cycles, "jobs": len(commands),
            "model_cycles": list_cycles(driver.config, [info.fields for info in commands]),
            "bit_exact": first_difference(expected.values[0], got) is None,
        })
    return results


def model_layers(config: EngineConfig, *, layers: list[dict]) -> list[dict]:
    """The analytic cycle model (:func:`radix.cycle_model.list_cycles`) of one-layer programs of
    the geometries ``layers`` (as :func:`measure_layers` takes them), nothing simulated."""
    rng = np.random.default_rng(0)
    results = []
    for spec in layers:
        program = layer_program(spec, config.width, rng)
        commands = place(program, config).commands
        results.append({"name": spec["name"], "macs": program.layers[0].macs, "jobs": len(commands),
                        "model_cycles": list_cycles(config, [info.fields for info in commands])})
    return results
