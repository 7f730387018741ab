"""radix: calibrate PyTorch CNNs to per-layer dynamic fixed point and run them on the Radix engine.

Every command takes ``--json`` and then prints exactly one JSON object on stdout. Host-only
dependencies (torch) are imported inside the commands that need them, so the runtime commands
(``eval``, ``inspect``, ``regs``) work on the board with numpy alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from . import __version__
from .arguments import BUILT_IN_MODELS, DATA_CHOICES, open_fraction, positive_float, positive_int
from .console import progress, table
from .evaluate import TASKS
from .schemes import ACTIVATION_RULES, WEIGHT_RULES
from .driver import DriverError

# exit codes (README "Exit codes"); 130 is the shell's own status for a command ended by Ctrl-C
EXIT_OK, EXIT_CHECK, EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class CliError(Exception):
    """A user-facing failure of the command line itself (arguments): exit status 2."""


class _UsageError(Exception):
    """argparse's complaint, raised instead of its own exit so that --json still prints JSON."""

    def __init__(self, message: str, usage: str):
        super().__init__(message)
        self.usage = usage


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # "radix run: ..." names the subcommand; the top level needs no second "radix:"
        command = self.prog.removeprefix("radix").strip()
        raise _UsageError(f"{command}: {message}" if command else message, self.format_usage())


class _UserExit(Exception):
    """User code (a model file's import, factory or forward) called ``sys.exit``: an input error."""


def _error_kind(exc: BaseException) -> tuple[str, int]:
    """``(kind, exit status)`` of a failure: the documented exit codes."""
    from .backends import BackendError
    from .driver import EngineMismatch
    from .errors import InputError

    if isinstance(exc, _UsageError) or isinstance(exc, CliError):
        return "usage", EXIT_INPUT
    if isinstance(exc, EngineMismatch):
        return "engine", EXIT_INPUT
    if isinstance(exc, (DriverError, BackendError)):
        return "engine", EXIT_CHECK
    if type(exc).__name__ == "UnsupportedModelError":
        return "unsupported", EXIT_CHECK
    if isinstance(exc, (InputError, OSError, _UserExit)):
        return "input", EXIT_INPUT
    return "internal", EXIT_INTERNAL


class _StdoutForJson:
    """Under ``--json`` only the one JSON object may reach stdout: while a command runs, whatever
    it or user code prints (Python's ``sys.stdout`` and file descriptor 1 alike, e.g. a model's
    ``print`` or a simulator's output) goes to stderr; both are restored on exit, before the JSON
    is printed."""

    def __init__(self):
        self._stream = sys.stdout
        self._saved_fd = None

    def __enter__(self):
        sys.stdout.flush()
        try:
            self._saved_fd = os.dup(1)
            os.dup2(2, 1)
        except OSError:  # no file descriptors to redirect (an embedding host): Python-level only
            self._saved_fd = None
        sys.stdout = sys.stderr
        return self

    def __exit__(self, *exc_info):
        sys.stderr.flush()
        sys.stdout = self._stream
        if self._saved_fd is not None:
            os.dup2(self._saved_fd, 1)
            os.close(self._saved_fd)
        return False


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    wants_json = "--json" in argv
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_request:  # --help and --version
        return int(exit_request.code or 0)
    except _UsageError as exc:
        if not wants_json:  # `radix` alone: the whole help, its commands listed
            print(_parser().format_help() if not argv else exc.usage, end="", file=sys.stderr)
        return _fail(wants_json, str(exc), "usage", EXIT_INPUT)
    try:
        with _StdoutForJson() if args.json else contextlib.nullcontext():
            result = _call(args)
    except KeyboardInterrupt:
        return _fail(wants_json, "interrupted (Ctrl-C); nothing was written", "interrupted", EXIT_INTERRUPTED)
    except Exception as exc:  # the one error boundary: every failure becomes one named line
        kind, status = _error_kind(exc)
        message = exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], str) else str(exc)
        if kind == "internal":
            message = (f"internal error: {type(exc).__name__}: {message} -- please report it with the command "
                       "line (set RADIX_DEBUG=1 for the traceback)")
            if os.environ.get("RADIX_DEBUG"):
                traceback.print_exc()
        return _fail(wants_json, message, kind, status)
    for warning in result.get("warnings", []):
        print(f"radix: warning: {warning}", file=sys.stderr)
    try:
        if args.json:
            payload = dict(result["json"])
            if result.get("warnings"):
                payload["warnings"] = result["warnings"]
            print(json.dumps(payload, indent=2, sort_keys=True, default=_json_default))
        else:
            print(result["text"])
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. `radix regs | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return result.get("status", EXIT_OK)


def _call(args) -> dict:
    """Run the command's handler; a ``sys.exit`` from user code inside it is the user's input."""
    try:
        return args.handler(args)
    except SystemExit as exc:
        raise _UserExit(f"user code called sys.exit({exc.code!r}) while radix ran {args.command!r} "
                        "(a model file's import, factory or forward?)") from None


def _fail(wants_json: bool, message: str, kind: str, status: int) -> int:
    if wants_json:
        try:
            print(json.dumps({"error": message, "kind": kind, "exit_status": status}))
        except BrokenPipeError:
            pass
    print(f"radix: error: {message}", file=sys.stderr)
    return status


# --images: a seeded subset (radix.datasets.subset), so that a class-sorted split keeps every class
SUBSET_HELP = ("use N {what}: a fixed seeded random subset, kept in file order (image numbers in messages "
               "count in the whole file or split)")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="radix", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"radix {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, handler, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        p.set_defaults(handler=handler)
        return p

    p = command("check", cmd_check, "list every module of MODEL as supported by the engine or not")
    _model_args(p)
    p.add_argument("--input-shape", help="C,H,W of one image, or F of a vector input (default: the built-in model's, "
                   "or from --data)")
    p.add_argument("--data", help="a data set name or .npz whose images give the input shape")

    p = command("calibrate", cmd_calibrate, "choose per-layer fractional lengths and write a program")
    _model_args(p)
    p.add_argument("--data", required=True, help=f"calibration data: {DATA_CHOICES} (a named set's training split)")
    p.add_argument("--bits", type=int, choices=(8, 16), default=8, help="engine data width (default 8)")
    scheme = p.add_argument_group("scheme (every option left out is chosen on held-out calibration images; "
                                  "the comparison is printed)")
    scheme.add_argument("--activations", choices=ACTIVATION_RULES, default=None,
                        help="activation fl rule: greedy (the paper's L1 search of the layer's exact output), mse "
                             "(the same search, squared error), maxabs (Ristretto's)")
    per_channel = scheme.add_mutually_exclusive_group()
    per_channel.add_argument("--per-channel", dest="per_channel", action="store_const", const=True, default=None,
                             help="one weight fl per output channel")
    per_channel.add_argument("--per-layer", dest="per_channel", action="store_const", const=False,
                             help="one weight fl per layer")
    scheme.add_argument("--weight-rule", choices=WEIGHT_RULES, default=None,
                        help="weight fl rule: l1 (the paper's; may saturate the largest weights), mse, maxabs "
                             "(nothing saturates)")
    scheme.add_argument("--bias-correction", action=argparse.BooleanOptionalAction, default=None,
                        help="shift each output channel's float bias by the mean error of its quantized output over "
                             "the calibration images")
    scheme.add_argument("--paper", action="store_true",
                        help="the paper's scheme (the default before radix chose): --per-layer --weight-rule l1 "
                             "--activations greedy --no-bias-correction; other scheme options override it")
    scheme.add_argument("--signed", action="store_true",
                        help="store every tensor signed; by default a non-negative input and every ReLU output are "
                             "stored unsigned (0..2^W-1: one more bit of range; engine version 4)")
    scheme.add_argument("--holdout", type=open_fraction, default=0.25, metavar="FRACTION",
                        help="share of the calibration images held out to choose the scheme (default 0.25)")
    p.add_argument("--static", action="store_true", help="one fl for all weights and one for all activations")
    p.add_argument("--weight-bits", action="append", default=[], metavar="SELECTOR=BITS",
                   help="weight bit width for 'fc', 'conv' or a layer/module name, e.g. fc=4 (repeatable)")
    p.add_argument("--images", type=positive_int, help=SUBSET_HELP.format(what="calibration images"))
    p.add_argument("--finetune", type=positive_int, metavar="EPOCHS",
                   help="after calibrating, train the weights for EPOCHS epochs on the labelled calibration images "
                        "through the engine's exact rounding (quantization-aware, straight-through), then calibrate "
                        "again")
    p.add_argument("--finetune-lr", type=positive_float, default=1e-4, metavar="LR",
                   help="Adam learning rate of --finetune (default 1e-4)")
    p.add_argument("-o", "--output", required=True, help="program file to write (.radix)")
    p.add_argument("--compressed-weights", action="store_true",
                   help="store the weights in the Deep Compression format (codebook, Huffman, sparse indices)")
    p.add_argument("--report", metavar="DIR", help="also write PNG plots per layer (histograms in log2 scale with the "
                   "chosen fls' range and saturation marked) and of SQNR per layer on calibration and test data")

    p = command("eval", cmd_eval, "accuracy of a program on a data set's test images")
    p.add_argument("program", help="a .radix program")
    p.add_argument("--backend", choices=("reference",), default="reference")
    p.add_argument("--data", required=True, help=f"{DATA_CHOICES} (a named set's test split)")
    p.add_argument("--images", type=positive_int, help=SUBSET_HELP.format(what="test images"))
    p.add_argument("--task", choices=("auto",) + TASKS, default="auto",
                   help="classify: top-1; reconstruct (autoencoders): per-sample error, output SQNR and the errors' "
                        "rank correlation against the float model (AUC with labels 0/1); auto (default): "
                        "reconstruct when the output has the input's shape")

    p = command("run", cmd_run, "run a program on an engine backend, a batch of images per START, checked against "
                                "the reference")
    p.add_argument("program", help="a .radix program")
    _backend_args(p)
    p.add_argument("--data", required=True, help=f"{DATA_CHOICES} (a named set's test split)")
    p.add_argument("--images", type=positive_int, default=100,
                   help=SUBSET_HELP.format(what="test images") + " (default 100)")
    p.add_argument("--batch", type=positive_int, default=1,
                   help="images per START: the engine runs the whole batch from one command list, fully connected "
                        "layers reading their weights once per batch (default 1)")
    p.add_argument("--clock-mhz", type=positive_float,
                   help="clock for the images/s estimate (default: the overlay's on pynq, else 100)")

    p = command("selftest", cmd_selftest, "random layers on an engine backend, compared word for word with the golden model")
    _backend_args(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--count", type=positive_int, default=20, help="number of random layers (default 20)")
    p.add_argument("--width", type=int, choices=(8, 16), default=8, help="data width of a reference/sim engine")

    p = command("verilog", cmd_verilog, "write the engine's Verilog (module radix_bus_engine)")
    _engine_args(p)
    p.add_argument("-o", "--output", required=True, help="Verilog file to write")

    p = command("resources", cmd_resources, "synthesise the engine for the xc7z020 with Yosys and report resources")
    _engine_args(p)

    p = command("timing", cmd_timing, "estimate the engine's slowest register-to-register paths and Fmax from the "
                "Yosys netlist (an estimate; Vivado must confirm)")
    _engine_args(p)

    p = command("deploy", cmd_deploy,
                "copy overlay, program, images, notebook and the radix wheel to a PYNQ-Z2, install and check it")
    p.add_argument("host", nargs="?", default="pynq.local", help="the board's host name or address (default pynq.local)")
    p.add_argument("--overlay", required=True, help="the overlay's .bit (its .hwh beside it)")
    p.add_argument("--program", required=True, help="a .radix program")
    p.add_argument("--data", required=True, help="an .npz of test images")
    p.add_argument("--user", default="xilinx", help="login on the board (default xilinx)")
    p.add_argument("--dir", default="/home/xilinx/jupyter_notebooks/radix",
                   help="destination on the board, under PYNQ's Jupyter root (default /home/xilinx/jupyter_notebooks/radix)")
    p.add_argument("--sudo-password", default="xilinx",
                   help="the board user's sudo password, given to sudo -S on standard input (default: the PYNQ image's)")
    p.add_argument("--dry-run", action="store_true", help="print every step without running it")

    p = command("inspect", cmd_inspect, "show a program's layers, fractional lengths and provenance")
    p.add_argument("program", help="a .radix program")

    p = command("regs", cmd_regs, "print the engine's register map")
    p.add_argument("--markdown", action="store_true", help="as the Markdown table of docs/registers.md")

    from .compress.cli import add_parser as add_compress_parser

    add_compress_parser(sub)
    return parser


def _backend_args(p):
    from .backends import available

    p.add_argument("--backend", choices=available(), default="reference",
                   help="reference: golden model; sim: the RTL in Verilator through cocotb; pynq: the board")
    p.add_argument("--overlay", default="radix.bit", help="pynq backend: the overlay's .bit (its .hwh beside it)")


def _engine_args(p):
    from .engine_spec import DEFAULT_CONFIG, EngineConfig

    p.add_argument("--rows", type=positive_int, default=DEFAULT_CONFIG.rows, help=f"array rows (default {DEFAULT_CONFIG.rows})")
    p.add_argument("--cols", type=positive_int, default=None,
                   help=f"array columns (default: {DEFAULT_CONFIG.cols} at W=8, two MACs per DSP48E1; "
                        f"{EngineConfig(width=16).cols} at W=16)")
    p.add_argument("--width", type=int, choices=(8, 16), default=DEFAULT_CONFIG.width,
                   help=f"data width (default {DEFAULT_CONFIG.width})")


def _engine_config(args):
    from .engine_spec import EngineConfig

    return EngineConfig(rows=args.rows, cols=args.cols, width=args.width)


def _model_args(p):
    p.add_argument("model", metavar="MODEL",
                   help=f"built-in name ({', '.join(BUILT_IN_MODELS)}), path/to/file.py:factory or model.onnx")
    p.add_argument("--weights", help="state_dict to load (default: the built-in model's)")


def _parse_shape(text: str) -> tuple[int, ...]:
    """``C,H,W`` of an image, or ``F`` of a vector input (MLPs, autoencoders)."""
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise CliError(f"--input-shape {text!r}: expected C,H,W (an image) or F (a vector)") from None
    if len(shape) not in (1, 3) or min(shape) < 1:
        raise CliError(f"--input-shape {text!r}: expected three positive integers C,H,W (an image) or one, F "
                       "(a vector)")
    return shape


def _input_shape(args, resolved) -> tuple[int, ...]:
    from .datasets import load_split

    if getattr(args, "input_shape", None):
        return _parse_shape(args.input_shape)
    if resolved.input_shape:
        return resolved.input_shape
    if args.data:
        x, _ = load_split(args.data, "test")
        return tuple(int(s) for s in x.shape[1:])
    raise CliError(f"model {args.model}: give --input-shape C,H,W (or F) or --data to know the input shape")


def _ingest_data_shape(args, resolved, shape):
    """Ingest ``resolved.module`` for input ``shape``; when the shape came from the images of
    ``--data`` (no ``--input-shape``, not a built-in), a first layer that does not fit it is the
    data's layout (e.g. channels-last), so it is a data error naming the file, not the model's."""
    from .errors import InputError
    from .ingest import InputShapeMismatch, ingest

    try:
        return ingest(resolved.module, shape)
    except InputShapeMismatch as exc:
        if getattr(args, "input_shape", None) or resolved.input_shape:
            raise
        raise InputError(f"--data {args.data}: {exc}") from None


def cmd_check(args) -> dict:
    from .ingest import UnsupportedModelError
    from .modelspec import resolve

    resolved = resolve(args.model, args.weights)
    shape = _input_shape(args, resolved)
    try:
        graph, findings = _ingest_data_shape(args, resolved, shape)
        layers, ok = graph.layers, True
    except UnsupportedModelError as exc:
        layers, findings, ok = [], exc.findings, False
    rows = [[f.name, f.type, "yes" if f.supported else "NO", f.reason] for f in findings]
    text = table(["module", "type", "supported", "reason"], rows)
    if ok:
        text += "\n\n" + table(["layer", "kind", "reads", "fused", "out"], [
            [l.name, l.role or l.kind, ", ".join(l.inputs), "+".join(l.modules[1:]) or "-",
             "x".join(map(str, l.out_shape))] for l in layers])
        text += f"\n\n{args.model}: supported: {len(layers)} layers"
    else:
        bad = sum(not f.supported for f in findings)
        text += f"\n\n{args.model}: {bad} unsupported"
    return {
        "status": EXIT_OK if ok else EXIT_CHECK,
        "warnings": resolved.warnings,
        "text": text,
        "json": {
            "model": args.model,
            "supported": ok,
            "modules": [f.__dict__ for f in findings],
            "layers": [{"name": l.name, "kind": l.kind, "role": l.role, "inputs": l.inputs, "modules": l.modules,
                        "out_shape": list(l.out_shape), "kernel": list(l.kernel), "stride": list(l.stride),
                        "groups": l.groups} for l in layers],
        },
    }


def _weight_bits(entries: list[str]) -> dict:
    out = {}
    for entry in entries:
        selector, sep, bits = entry.partition("=")
        if not sep or not bits.isdigit():
            raise CliError(f"--weight-bits {entry!r}: expected SELECTOR=BITS, e.g. fc=4")
        out[selector] = int(bits)
    return out


def cmd_calibrate(args) -> dict:
    from .calibrate import CalibrationSettings, calibrate, calibration_passes
    from .data_checks import calibration_warnings, fingerprint
    from .evaluate import data_source, float_accuracy, infer_task, load_checked
    from .modelspec import resolve
    from .program import check_writable

    options = {"activation_rule": args.activations, "per_channel": args.per_channel, "weight_rule": args.weight_rule,
               "bias_correction": args.bias_correction}
    forced = {name: value for name, value in options.items() if value is not None}
    common = {"bits": args.bits, "static": args.static, "weight_bits": _weight_bits(args.weight_bits),
              "holdout": args.holdout, "unsigned": not args.signed}
    settings = (CalibrationSettings.paper(**forced, **common) if args.paper
                else CalibrationSettings(**options, **common))
    check_writable(args.output)  # before the long work, not after it
    if args.report:
        from .report_plots import check_plot_dir

        check_plot_dir(args.report)
    resolved = resolve(args.model, args.weights)
    x, y, warnings = load_checked(args.data, "train", images=args.images)
    graph, _ = _ingest_data_shape(args, resolved, resolved.input_shape or tuple(x.shape[1:]))
    warnings += calibration_warnings(x, y, source=data_source(args.data, "train"), layers=len(graph.layers))
    start = time.perf_counter()
    steps = calibration_passes(settings) * len(graph.layers)
    bar = progress(range(steps), desc="calibrating", total=steps, enabled=not args.json)
    ticker = iter(bar)
    program = calibrate(graph, x, settings, progress=lambda _name: next(ticker, None))
    task, _ = infer_task(program)
    finetuned = None
    if args.finetune:
        from .finetune import FinetuneSettings, finetune_program

        epochs = progress(range(args.finetune), desc="fine-tuning", total=args.finetune, enabled=not args.json)
        ticks = iter(epochs)
        graph, program, finetuned = finetune_program(
            graph, program, x, y, FinetuneSettings(epochs=args.finetune, lr=args.finetune_lr),
            lambda trained: calibrate(trained, x, settings), task=task,
            progress=lambda _epoch: next(ticks, None))
        program.report["finetune"] = finetuned
    seconds = time.perf_counter() - start
    classify = task == "classify"
    x_test, y_test, test_warnings = load_checked(args.data, "test",
                                                 classes=int(np.prod(graph.layers[-1].out_shape)) if classify else None)
    program.source = {
        **resolved.provenance(),
        "dataset": args.data,
        "calibration_images": int(x.shape[0]),
        **({"finetune_epochs": args.finetune} if args.finetune else {}),
        # the float model's accuracy, measured once here so that eval compares against a fixed number
        "float_accuracy": {"data": args.data, "images": int(len(x_test)), "sha256": fingerprint(x_test, y_test),
                           "top1": float_accuracy(resolved.module, x_test, y_test)} if classify else None,
        "radix_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    program.report["seconds"] = round(seconds, 3)
    program.weight_storage = "compressed" if args.compressed_weights else "dense"
    program.save(args.output)
    text = _report_table(program) + "\n\n" + _scheme_text(program.report.get("calibration", {}))
    if finetuned:
        text += (f"\n\nfine-tuned {finetuned['epochs']} epochs through the engine's arithmetic: loss "
                 f"{finetuned['loss_first_epoch']:.4g} -> {finetuned['loss_last_epoch']:.4g}")
        if "train_top1_before" in finetuned:
            text += (f", training top-1 {100 * finetuned['train_top1_before']:.2f}% -> "
                     f"{100 * finetuned['train_top1_after']:.2f}%")
        metric = "top-1" if finetuned["held_out_metric"] == "top1" else "negated MSE"
        scores = ", ".join(f"{name} {score:.4g}" for name, score in finetuned["held_out_scores"].items())
        text += (f"\non {finetuned['held_out_images']} calibration images held out of training, {metric}: {scores}; "
                 f"kept: {finetuned['kept']}")
    text += f"\n\nwrote {args.output} ({len(program.layers)} layers, {seconds:.1f} s)"
    if args.report:
        from .report_plots import write_plots

        plots = write_plots(graph, program, x, args.report, x_test=x_test)
        program.report["plots"] = [str(path) for path in plots]
        text += f"\nwrote {len(plots)} plots to {args.report}"
    return {"text": text, "json": {"output": args.output, "seconds": seconds, **program.report},
            "warnings": resolved.warnings + warnings + [w for w in test_warnings if w not in warnings]}


def _scheme_text(calibration: dict) -> str:
    """The schemes calibration tried, their held-out scores and the one it chose, and why."""
    if calibration.get("mode") != "chosen":
        return f"scheme: {calibration.get('chosen', '?')} (forced by the options)"
    rows = [["*" if c["chosen"] else "", c["scheme"], f"{100 * c['holdout_agreement']:.2f}%",
             c["holdout_logit_sqnr_db"], f"{c['seconds']:.1f}"] for c in calibration["candidates"]]
    held = (f"{calibration['holdout_images']} held-out images" if calibration["held_out"]
            else f"the {calibration['holdout_images']} calibration images (too few to hold any out)")
    return "\n".join([
        f"schemes tried on {held} (fitted on {calibration['fit_images']}):",
        table(["", "scheme", "top-1 agreement with float", "logit SQNR dB", "s"], rows),
        f"chosen: {calibration['chosen']} ({calibration['reason']})"])


def _fmt_fl(values: list[int]) -> str:
    return str(values[0]) if len(set(values)) == 1 else f"{min(values)}..{max(values)}"


def _fmt_pair(values) -> str:
    """A kernel or stride: one number when square, else vertical x horizontal."""
    return str(values[0]) if values[0] == values[1] else f"{values[0]}x{values[1]}"


def _fmt_padding(padding) -> str:
    """One number when every side has the same padding, else top,left,bottom,right."""
    return str(padding[0]) if len(set(padding)) == 1 else ",".join(map(str, padding))


def _report_table(program) -> str:
    rows = []
    for layer in program.layers:
        s = layer.stats
        if not layer.operation.has_weights:
            rows.append([layer.name, layer.kind, "-", _fl(layer.fl_in, layer.unsigned_in), "-", "-", "-",
                         _fl(layer.fl_out, layer.unsigned_out)] + ["-"] * 5)
            continue
        rows.append([
            layer.name, layer.role or layer.kind, "+".join(layer.modules[1:]) or "-", _fl(layer.fl_in, layer.unsigned_in),
            "-" if layer.fl_skip is None else _fl(layer.fl_skip, layer.unsigned_skip), _fmt_fl(layer.fl_w),
            _fmt_fl(layer.fl_b), _fl(layer.fl_out, layer.unsigned_out),
            layer.weight_bits, s.get("weight_sqnr_db"), s.get("act_sqnr_db"),
            f"{100 * s.get('act_saturated', 0):.3f}%", s.get("bias_saturated"),
        ])
    return (f"W={program.width} bits, input fl={_fl(program.input_fl, program.input_unsigned)} "
            f"({UNSIGNED_LEGEND})\n" + table(
        ["layer", "kind", "fused", "fl_in", "fl_skip", "fl_w", "fl_b", "fl_out", "w bits", "w SQNR dB",
         "act SQNR dB", "act sat", "bias sat"], rows))


UNSIGNED_LEGEND = "an fl marked u: the tensor is stored unsigned, 0..2^W-1"


def _fl(fl: int, unsigned: bool) -> str:
    """An activation fl, marked ``u`` when its tensor is stored unsigned (docs/arithmetic.md §1)."""
    return f"{fl}u" if unsigned else str(fl)


def _load_program(path: str):
    from .program import Program

    return Program.load(path)


def cmd_eval(args) -> dict:
    from .evaluate import infer_task, load_checked, output_classes

    program = _load_program(args.program)
    task, why = infer_task(program)
    if args.task != "auto":
        task, why = args.task, "--task"
    x, y, warnings = load_checked(args.data, "test", images=args.images,
                                  classes=output_classes(program) if task == "classify" else None)

    def bar(items):
        return progress(items, desc="eval", total=len(items), enabled=not args.json)

    evaluated = (_eval_classify if task == "classify" else _eval_reconstruct)(program, x, y, bar)
    result = {"program": args.program, "backend": args.backend, "data": args.data, "images": int(len(x)),
              "task": task, "task_reason": why, **evaluated["json"]}
    text = f"{len(x)} images from {args.data}: {evaluated['text']}"
    saturated, clipped_far = result["input_saturated"], result["input_clipped_beyond_one_step"]
    if clipped_far:
        warnings.append(f"{saturated} of {x.size} input values saturated at the input fl {program.input_fl}, "
                        f"{clipped_far} of them by more than one step (2^-{program.input_fl})")
    elif saturated:
        text += (f"\n{saturated} of {x.size} input values saturated at the input fl {program.input_fl}, "
                 "each by at most one step (calibration's choice: it costs no more than rounding)")
    return {"text": text, "json": result, "warnings": warnings}


def _input_counts(x, saturated: int, clipped_far: int) -> dict:
    return {"input_saturated": saturated, "input_clipped_beyond_one_step": clipped_far, "input_elements": int(x.size)}


def _eval_classify(program, x, y, bar) -> dict:
    from .evaluate import program_accuracy, source_float_accuracy

    accuracy, saturated, clipped_far = program_accuracy(program, x, y, progress=bar)
    float_acc, float_source = source_float_accuracy(program, x, y)
    text = f"fixed point ({program.width}-bit) top-1 {100 * accuracy:.2f}%"
    text += f", float {100 * float_acc:.2f}% ({float_source})" if float_acc is not None else f" (no float: {float_source})"
    return {"text": text, "json": {"accuracy": accuracy, "float_accuracy": float_acc,
                                   "float_accuracy_source": float_source, **_input_counts(x, saturated, clipped_far)}}


def _eval_reconstruct(program, x, y, bar) -> dict:
    from .evaluate import float_outputs, program_outputs, reconstruction_report, source_model

    if int(np.prod(program.layers[-1].out_shape)) != int(np.prod(x.shape[1:])):
        raise CliError(f"--task reconstruct: the program's output {tuple(program.layers[-1].out_shape)} does not "
                       f"have the input's {int(np.prod(x.shape[1:]))} values")
    outputs, saturated, clipped_far = program_outputs(program, x, progress=bar)
    module, reason = source_model(program)
    report = reconstruction_report(program, x, y, outputs, float_outputs(module, x) if module is not None else None)
    text = f"reconstruction ({program.width}-bit): mean squared error {report['mean_error']:.6g}"
    if module is None:
        text += f" (no float: {reason})"
    else:
        correlation = report["error_rank_correlation"]
        text += (f", float {report['float_mean_error']:.6g} (measured now); output SQNR "
                 f"{report['output_sqnr_db']:.2f} dB against the float model; per-sample errors' rank correlation "
                 f"with float {'undefined (constant errors)' if correlation is None else f'{correlation:.4f}'}")
    if "auc" in report:
        text += f"; AUC (labels 0/1 as normal/anomalous) {report['auc']:.4f}"
        if "float_auc" in report:
            text += f", float {report['float_auc']:.4f}"
    return {"text": text, "json": {**report, "float_source": "measured now" if module is not None else reason,
                                   **_input_counts(x, saturated, clipped_far)}}


def _on_backend(args, function: str, kwargs: dict, width: int, *, total: int, desc: str) -> dict:
    """Call ``radix.runner.<function>(transport, **kwargs)`` on the chosen backend."""
    from . import backends
    from .engine_spec import EngineConfig

    bar = progress(None, desc=desc, total=total, enabled=not args.json)

    def show(count: int) -> None:
        if hasattr(bar, "update"):
            bar.update(count - bar.n)

    try:
        return backends.run(args.backend, f"radix.runner:{function}", kwargs, EngineConfig(width=width),
                            progress=show, options={"overlay": args.overlay})
    finally:
        if hasattr(bar, "close"):
            bar.close()


def cmd_run(args) -> dict:
    from .evaluate import infer_task, load_checked, output_classes

    program = _load_program(args.program)
    task, _ = infer_task(program)
    _, _, warnings = load_checked(args.data, "test", images=args.images,
                                  classes=output_classes(program) if task == "classify" else None)
    clock = args.clock_mhz if args.clock_mhz is not None or args.backend == "pynq" else 100.0
    # absolute paths: the sim backend runs the driver inside the simulator, in another directory
    data = str(Path(args.data).resolve()) if Path(args.data).is_file() else args.data
    kwargs = {"program": str(Path(args.program).resolve()), "data": data, "images": args.images,
              "batch": args.batch, "clock_mhz": clock}
    result = _on_backend(args, "run_files", kwargs, program.width, total=args.images, desc="run")
    cycles = result["cycles"]
    rows = [[name, f"{value:.0f}", f"{result['saturated_per_layer'][name]:g}"]
            for name, value in cycles["per_layer_mean"].items()]
    verdict = "bit-exact with the reference on every image" if result["bit_exact"] else (
        f"NOT bit-exact: {result['mismatched_images']} image(s) differ; first: {result['first_mismatch']}")
    estimate = result["estimate"]
    fps = estimate["images_per_s"]
    host = result["per_image"]
    text = "\n".join([
        table(["layer", f"cycles/image ({cycles['source']})", "saturated/image"], rows),
        "",
        f"{result['images']} images on the {result['backend']} backend: top-1 {100 * result['accuracy']:.2f}% "
        f"(reference {100 * result['reference_accuracy']:.2f}%)" if task == "classify" else
        f"{result['images']} inputs on the {result['backend']} backend, reconstructed (radix eval reports the error)",
        f"{verdict}",
        f"{cycles['per_image_mean']:.0f} cycles/image ({cycles['source']}, START to DONE, batch {result['batch']}); "
        f"{fps:.0f} images/s at {estimate['clock_mhz']:g} MHz (estimate)"
        if fps else "no cycles measured",
        f"per image: host {host['host_ms']:.3f} ms outside the engine, {host['register_accesses']:g} register "
        f"accesses, {host['bytes_read']:.0f} bytes read and {host['bytes_written']:.0f} written by the engine",
    ])
    return {"text": text, "json": {**result, "task": task}, "status": EXIT_OK if result["bit_exact"] else EXIT_CHECK,
            "warnings": warnings}


def cmd_selftest(args) -> dict:
    kwargs = {"seed": args.seed, "count": args.count}
    result = _on_backend(args, "selftest", kwargs, args.width, total=args.count, desc="selftest")
    lines = [f"mismatch: layer {m['layer']} {m.get('description', '')} tensor {m['tensor']} index {m['index']}: "
             f"expected {m['expected']}, got {m['got']}" for m in result["details"]]
    lines.append(f"{result['layers']} random layers on the {result['backend']} backend (seed {result['seed']}): "
                 f"{result['mismatches']} mismatches")
    return {"text": "\n".join(lines), "json": result, "status": EXIT_OK if result["mismatches"] == 0 else EXIT_CHECK}


def cmd_verilog(args) -> dict:
    from .plugins import gateware
    from .program import check_writable

    config = _engine_config(args)
    check_writable(args.output, what="Verilog file")  # before the generation's 20-45 s
    Path(args.output).write_text(gateware("verilog").generate(config))
    return {"text": f"wrote {args.output} (radix_bus_engine, {config.rows}x{config.cols}, W={config.width})",
            "json": {"output": args.output, "config": config.as_dict()}}


def cmd_resources(args) -> dict:
    from .plugins import gateware

    resources = gateware("resources")
    report = resources.synthesize(_engine_config(args))
    return {"text": resources.format_report(report), "json": report}


def cmd_timing(args) -> dict:
    from .plugins import gateware

    timing = gateware("timing")
    report = timing.report(_engine_config(args))
    return {"text": timing.format_report(report), "json": report}


def cmd_deploy(args) -> dict:
    from .deploy import DeployError, deploy

    try:
        commands = deploy(args.host, overlay=args.overlay, program=args.program, data=args.data, user=args.user,
                          directory=args.dir, sudo_password=args.sudo_password, dry_run=args.dry_run)
    except DeployError as exc:
        raise CliError(str(exc)) from None
    verb = "would run" if args.dry_run else "ran"
    return {"text": f"{verb}:\n" + "\n".join(commands), "json": {"host": args.host, "dry_run": args.dry_run,
                                                                  "commands": commands}}


def cmd_inspect(args) -> dict:
    program = _load_program(args.program)
    rows = [[l.name, (l.role or l.kind) + (f" g{l.groups}" if l.groups > 1 else ""), ", ".join(l.inputs),
             "x".join(map(str, l.in_shape)),
             "x".join(map(str, l.out_shape)),
             f"{_fmt_pair(l.kernel)}/{_fmt_pair(l.stride)}/{_fmt_padding(l.padding)}" if l.operation.windowed else "-",
             "+".join(flag for flag, on in (("add", l.skip), ("relu", l.relu), ("pool", l.pool)) if on) or "-",
             _fl(l.fl_in, l.unsigned_in), "-" if l.fl_skip is None else _fl(l.fl_skip, l.unsigned_skip),
             _fmt_fl(l.fl_w) if l.operation.has_weights else "-", _fl(l.fl_out, l.unsigned_out),
             _fmt_fl(l.shift.tolist()) if l.operation.has_weights else "-", l.macs]
            for l in program.layers]
    text = table(["layer", "kind", "reads", "in", "out", "k/s/pad", "fused", "fl_in", "fl_skip", "fl_w", "fl_out",
                  "shift", "MACs"], rows)
    text += f"\n\ninput fl {_fl(program.input_fl, program.input_unsigned)} ({UNSIGNED_LEGEND})"
    text += "\nsource: " + ", ".join(f"{k}={v}" for k, v in program.source.items())
    layers = []
    for l in program.layers:
        entry = {k: v for k, v in l.__dict__.items() if k not in ("weights", "bias")}
        if l.operation.has_weights:
            entry.update(shift=l.shift.tolist(), fl_b=l.fl_b)
        if l.skip is not None:
            entry.update(skip_shift=l.skip_shift.tolist())
        entry["macs"] = l.macs
        layers.append(entry)
    from .compress.storage import program_storage, storage_text

    storage = program_storage(program, path=args.program)
    text += "\n\n" + storage_text(storage)
    return {"text": text, "json": {"program": args.program, "width": program.width, "input_shape": program.input_shape,
                                   "input_fl": program.input_fl, "source": program.source, "layers": layers,
                                   "storage": storage}}


def cmd_regs(args) -> dict:
    from .engine_spec import BUS_REGISTERS, bus_markdown_table

    rows = []
    for r in BUS_REGISTERS:
        rows.append([f"0x{r.offset:03X}", r.name, r.access, "", r.doc])
        rows += [["", "", "", f"bit {f.offset}" if f.width == 1 else f"bits {f.offset + f.width - 1}:{f.offset}",
                  f"{f.name}: {f.doc}"] for f in r.fields]
    text = bus_markdown_table() if args.markdown else table(["offset", "name", "access", "bits", "description"], rows)
    return {"text": text.rstrip(), "json": {"registers": [
        {"name": r.name, "offset": r.offset, "access": r.access, "doc": r.doc,
         "fields": [f.__dict__ for f in r.fields]} for r in BUS_REGISTERS]}}


if __name__ == "__main__":
    sys.exit(main())
