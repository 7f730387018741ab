"""``radix compress``: its arguments (:func:`add_parser`) and its handler (:func:`cmd_compress`).

    radix compress MODEL [--weights W] --data D [methods, in the order given] -o OUT [--json]

The handler returns ``{"text", "json", "warnings"}`` like the handlers of :mod:`radix.cli`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..arguments import BUILT_IN_MODELS, DATA_CHOICES, non_negative_int, positive_float, positive_int
from . import CompressionError

METHOD_OPTIONS = ("--prune", "--prune-channels", "--svd", "--svd-energy", "--ttq", "--share")


class _Method(argparse.Action):
    """Appends ``(option, value)`` to ``args.methods``, so the methods keep the command line's order."""

    def __call__(self, parser, namespace, values, option_string=None):
        methods = list(getattr(namespace, "methods", None) or [])
        methods.append((option_string, values))
        namespace.methods = methods


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``compress`` command to ``subparsers`` (an ``argparse`` sub-parser action)."""
    text = "compress a model (pruning, channel pruning, SVD, ternary, weight sharing) into a model file"
    p = subparsers.add_parser("compress", help=text, description=text + "; the methods apply in the order given")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("model", metavar="MODEL",
                   help=f"built-in name ({', '.join(BUILT_IN_MODELS)}), path/to/file.py:factory or a model file")
    p.add_argument("--weights", help="state_dict to load (default: the built-in model's)")
    p.add_argument("--data", required=True, help=f"{DATA_CHOICES}: fine-tuning on its training split, "
                                                 "accuracies on its test split")
    p.add_argument("-o", "--output", required=True, help="model file to write (e.g. model-dc.pt)")
    methods = p.add_argument_group("methods (applied in the order given)")
    methods.add_argument("--prune", type=float, action=_Method, metavar="S",
                         help="magnitude pruning to sparsity S, per-layer by sensitivity, iterative")
    methods.add_argument("--prune-channels", type=float, action=_Method, metavar="S",
                         help="remove whole channels (smallest L1 filters) until the MACs fall by the fraction S")
    methods.add_argument("--svd", type=positive_int, action=_Method, metavar="R",
                         help="factorise fully connected layers at rank R (two engine layers each)")
    methods.add_argument("--svd-energy", type=float, action=_Method, metavar="E",
                         help="as --svd, at the smallest rank keeping the fraction E of the squared singular values")
    methods.add_argument("--ttq", nargs=0, action=_Method, help="trained ternary quantization")
    methods.add_argument("--share", type=positive_int, action=_Method, metavar="B",
                         help="Deep Compression weight sharing: 2^B centroids per layer, Huffman-coded storage")
    options = p.add_argument_group("method options")
    options.add_argument("--prune-steps", type=positive_int, default=5, metavar="N",
                         help="pruning rounds, each followed by fine-tuning (default 5)")
    options.add_argument("--svd-conv", action="store_true", help="factorise convolutions too (k x k to r, then 1x1)")
    options.add_argument("--svd-layers", metavar="NAMES", help="factorise only these comma-separated layers")
    options.add_argument("--ttq-threshold", type=float, default=0.05, metavar="T",
                         help="ternary threshold T * max|w| (default 0.05)")
    options.add_argument("--ttq-full-precision", choices=("both", "first", "last", "none"), default="both",
                         help="which of the first and last layers stay full precision (default both, as the paper)")
    tuning = p.add_argument_group("fine-tuning")
    tuning.add_argument("--epochs", type=non_negative_int, default=6, help="fine-tuning epochs per method and pruning round "
                                                              "(default 6; 0: none)")
    tuning.add_argument("--lr", type=positive_float, default=2e-3, help="Adam learning rate, decayed to 0 over each "
                                                               "fine-tuning (default 2e-3)")
    tuning.add_argument("--augment", choices=("auto", "affine", "off"), default="auto",
                        help="augmentation of the training images: affine (random rotation, scale, shift), off, or "
                             "auto: the built-in model's training recipe (affine for lenet5), off for other models")
    tuning.add_argument("--batch-size", type=positive_int, default=64, help="mini-batch size (default 64)")
    tuning.add_argument("--seed", type=int, default=0, help="seed of shuffling and subsets (default 0)")
    tuning.add_argument("--images", type=positive_int, help="fine-tune on a seeded random subset of N training images")
    check = p.add_argument_group("fixed-point check")
    check.add_argument("--radix-bits", type=int, choices=(8, 16),
                       help="also calibrate the result to this data width and score it on the engine's arithmetic")
    check.add_argument("--weight-bits", action="append", default=[], metavar="SELECTOR=BITS",
                       help="with --radix-bits: weight width for 'fc', 'conv' or a layer, e.g. fc=4 (repeatable)")
    check.add_argument("--calib-images", type=positive_int, help="with --radix-bits: calibrate on N training images")
    p.set_defaults(handler=cmd_compress, methods=[])
    return p


def _weight_bits(entries: list[str]) -> dict:
    out = {}
    for entry in entries:
        selector, sep, bits = entry.partition("=")
        if not sep or not selector or not bits.isdigit():
            raise CompressionError(f"--weight-bits {entry!r}: expected SELECTOR=BITS, e.g. fc=4")
        out[selector] = int(bits)
    return out


def methods_from(args) -> list:
    """The method objects of the parsed arguments, in command-line order."""
    from .channels import PruneChannels
    from .prune import Prune
    from .share import Share
    from .svd import LowRank
    from .ttq import Ternary

    layers = tuple(name.strip() for name in args.svd_layers.split(",") if name.strip()) if args.svd_layers else ()
    methods = []
    for option, value in args.methods:
        if option == "--prune":
            methods.append(Prune(sparsity=value, steps=args.prune_steps))
        elif option == "--prune-channels":
            methods.append(PruneChannels(fraction=value))
        elif option == "--svd":
            methods.append(LowRank(rank=value, conv=args.svd_conv, layers=layers))
        elif option == "--svd-energy":
            methods.append(LowRank(energy=value, conv=args.svd_conv, layers=layers))
        elif option == "--ttq":
            methods.append(Ternary(threshold=args.ttq_threshold, full_precision=args.ttq_full_precision))
        else:
            methods.append(Share(bits=value))
    if not any(isinstance(m, LowRank) for m in methods) and (args.svd_conv or layers):
        raise CompressionError("--svd-conv and --svd-layers need --svd R or --svd-energy E")
    if args.weight_bits and args.radix_bits is None:
        raise CompressionError("--weight-bits needs --radix-bits (it sets the fixed-point check's weight widths)")
    return methods


def cmd_compress(args) -> dict:
    """Compress MODEL as the options say and write the model file; the report as text and JSON."""
    import torch

    from ..console import table
    from ..datasets import load_split
    from ..modelspec import resolve
    from ..program import check_writable
    from . import model_file
    from .flow import RadixCheck, compress
    from .training import FineTune, TrainingData

    torch.set_num_threads(1)  # a shared machine: one core for the fine-tuning
    output = Path(args.output)
    if output.suffix in (".radix", ".py"):
        raise CompressionError(f"-o {output}: the output is a model file (e.g. {output.with_suffix('.pt').name}); "
                               "radix calibrate turns it into a .radix program")
    methods = methods_from(args)
    settings = FineTune(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                        augment=_augment(args), show_progress=not args.json)
    radix = None
    if args.radix_bits is not None:
        radix = RadixCheck(bits=args.radix_bits, weight_bits=_weight_bits(args.weight_bits), images=args.calib_images)
    check_writable(output)  # before the long work, not after it
    resolved = resolve(args.model, args.weights)
    input_shape = resolved.input_shape or tuple(int(s) for s in load_split(args.data, "test")[0].shape[1:])
    try:
        with torch.no_grad():
            classes = int(resolved.module.eval()(torch.zeros((1,) + tuple(input_shape))).reshape(1, -1).shape[1])
    except RuntimeError as exc:
        raise CompressionError(f"model {args.model}: does not run on images of shape {input_shape} ({exc})") from None
    data, warnings = TrainingData.load(args.data, images=args.images, seed=args.seed, classes=classes)
    result = compress(resolved.module, input_shape=input_shape, data=data, methods=methods, fine_tune=settings,
                      radix=radix)
    report = result.report
    model_file.save(result.module, output, input_shape=input_shape, dataset=args.data,
                    source={**resolved.provenance(), "data": args.data}, compression=report)
    rows = [[r["name"], r["kind"], "x".join(map(str, r["shape"])), r["weights"], r["nonzero"],
             f"{100 * r['sparsity']:.1f}%", _describe(r), r["format"], r["weight_bytes"], r["bias_bytes"]]
            for r in report["layers"]]
    lines = [table(["layer", "kind", "shape", "weights", "nonzero", "sparsity", "compressed as", "stored",
                    "weight bytes", "bias bytes"], rows), ""]
    lines.append(f"parameters {report['params_before']} -> {report['params_after']} nonzero; weight storage "
                 f"{report['bytes_dense']} -> {report['bytes_compressed']} bytes "
                 f"({report['compression_ratio']:.1f}x{', Huffman-coded' if report['huffman'] else ''}); with the "
                 f"float32 biases {report['bytes_total_dense']} -> {report['bytes_total_compressed']} bytes "
                 f"({report['bytes_total_dense'] / report['bytes_total_compressed']:.1f}x)")
    lines.append(f"float top-1 {100 * report['float_accuracy_before']:.2f}% -> "
                 f"{100 * report['float_accuracy_after']:.2f}% ({report['test_images']} test images)")
    if "macs_after" in report and "macs_before" in report:
        lines.append(f"MACs/image {report['macs_before']} -> {report['macs_after']}; cycles/image "
                     f"{report['cycles_before']:.0f} -> {report['cycles_after']:.0f} ({report['cycles_source']})")
    if "radix" in report:
        check = report["radix"]
        lines.append(f"{check['bits']}-bit fixed point: top-1 {100 * check['accuracy']:.2f}% "
                     f"({check['loss_pp']:+.2f} pp loss against the float model before compression)")
        errors = check["codebook_errors"]
        if errors:
            exact = [name for name, entry in errors.items() if entry["exact"]]
            worst = max(errors, key=lambda name: errors[name]["max_relative_error"])
            lines.append(f"shared/ternary values exact in fixed point: {len(exact)} of {len(errors)} layers"
                         + ("" if len(exact) == len(errors) else
                            f"; largest error {100 * errors[worst]['max_relative_error']:.2f}% of a value "
                            f"({worst}, fl_w {errors[worst]['fl_w']})"))
    lines.append(f"wrote {output} ({report['seconds']:.1f} s)")
    return {"text": "\n".join(lines), "json": {"output": str(output), "model": resolved.spec, **report},
            "warnings": resolved.warnings + warnings + result.warnings}


def _augment(args):
    """``--augment`` as a function of (images, generator), or None; auto follows the built-in
    model's training recipe (``radix_models.train.RECIPES``)."""
    from radix_models.train import RECIPES, random_affine

    if args.augment == "auto":
        return RECIPES[args.model].augment if args.model in RECIPES else None
    return random_affine if args.augment == "affine" else None


def _describe(row: dict) -> str:
    """What the methods left in a layer, for the text table."""
    parts = []
    if "channels" in row:
        parts.append(f"channels {row['channels']}")
    if "factor_of" in row:
        parts.append(f"rank {row['rank']}, factor {row['factor_of']}")
    if "ternary" in row:
        parts.append(f"ternary +{row['ternary']['wp']:.4g}/-{row['ternary']['wn']:.4g}")
    if "codebook" in row:
        parts.append(f"codebook {row['codebook']}")
    return ", ".join(parts) or "-"
