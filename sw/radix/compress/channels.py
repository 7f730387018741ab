"""Structured pruning of whole output channels (filters of a Conv2d, neurons of a Linear) and of the
matching input channels of the layer that reads them, so the engine computes fewer channels.

**Which layers.** A Conv2d/Linear whose output reaches exactly one Conv2d/Linear through
channel-preserving operations only (ReLU, max/average pooling, zero padding, BatchNorm — sliced
too —, Dropout/Identity and, before a Linear, a flatten): a *chain*. Outputs read by a residual
add, a concatenation, two layers, or the network's output are left whole.

**Which channels.** Within a layer, the filters with the smallest L1 norm go first (Li, Kadav,
Durdanovic, Samet and Graf, "Pruning Filters for Efficient ConvNets", ICLR 2017).

**How many.** Greedily, one step at a time, until the MACs of all Conv2d/Linear layers have fallen
by the requested fraction. A layer's channel count is both the output channels of the producer,
which the engine maps onto the array's columns (``EngineConfig.cols``: 22 in the default W=8
build), and the input channels of its reader, which it maps onto the array's rows
(``EngineConfig.rows``: 16). A partly filled tile costs the engine as many cycles as a full one in
either direction, so above one tile a step goes from ``c`` channels to the next lower multiple of
the columns *or* of the rows, whichever is larger (16 x 22: 64 -> 48 -> 44 -> 32 -> 22 -> 16):
every step then empties a whole output tile of the producer or a whole input tile of the reader,
and the channels between two such counts would be free. Rounding to columns alone (64 -> 44 -> 22)
leaves the reader with 44 = 2 x 16 + 12 or 22 = 16 + 6 inputs, a third or half of its input tile
wasted; rounding to rows alone would waste the producer's columns the same way. At
``min(rows, cols)`` channels or fewer (one tile both ways) a step removes one channel: fewer MACs
in the next layer, and the fraction is met without overshooting it by a whole tile. Every layer
keeps at least one channel.

**Which step.** The one with the smallest increase of the validation loss per engine cycle saved.
The cycles are the array's passes, the compute term of :mod:`radix.cycle_model`: per layer, input
tiles x output tiles x kernel positions x ``max(output pixels, EngineConfig.min_pass)``. Steps that
remove no pass (inside a single tile) come after all steps that do, ranked by loss per MAC. Ranking
every step by MACs misses what the engine pays: a 1-input-channel first convolution has few MACs
but costs ``k * k`` passes over its whole map per output tile, and its output count sets the
reader's input tiles; on VGGNet the MAC ranking removed half the MACs but only 38 % of the
measured cycles, kept the first convolution whole and cut the last one to 13 channels.

**Trial cuts.** A cut is simulated by zeroing the reader's weights for the cut channels and adding
what those inputs contributed on average (their mean on the validation images times the weights)
to the reader's bias. Without that, the trial loss measures the shift of the reader's mean rather
than the information lost: a BatchNorm-folded VGGNet's loss went from 0.03 to 10.6 when its first
convolution lost 10 of 32 channels. The chosen cut stays so (later trials see it); the channels
are then removed and the model fine-tuned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from ..engine_spec import DEFAULT_CONFIG, EngineConfig
from . import CompressionError
from .training import evaluate, fine_tune, set_module, zeros_kept

_PASS_MODULES = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.ZeroPad2d, nn.ConstantPad2d,
                 nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
_PASS_FUNCTIONS = (F.relu, torch.relu, F.max_pool2d, torch.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.pad,
                   F.dropout, torch.mean)
_PASS_METHODS = ("relu", "contiguous", "mean")
_FLATTEN_METHODS = ("view", "reshape", "flatten")


@dataclass(frozen=True, kw_only=True)
class PruneChannels:
    """``--prune-channels S``: remove whole channels until the MACs fall by the fraction ``fraction``;
    ``cols`` and ``rows`` are the array's output and input lanes the kept counts are rounded to."""

    fraction: float
    cols: int = DEFAULT_CONFIG.cols
    rows: int = DEFAULT_CONFIG.rows

    name = "prune_channels"

    def __post_init__(self):
        if not isinstance(self.fraction, (int, float)) or not 0 < self.fraction < 1:
            raise CompressionError(f"--prune-channels {self.fraction!r}: the fraction of MACs to remove must be in "
                                   "(0, 1)")
        for what, value in (("columns", self.cols), ("rows", self.rows)):
            if not isinstance(value, int) or value < 1:
                raise CompressionError(f"array {what} {value!r}: must be a positive integer")


@dataclass
class Chain:
    """Output channels of ``producer`` read by ``consumer`` alone; ``batchnorms`` lie between them;
    ``spatial`` is how many consumer inputs each channel feeds (a Linear after a flatten: H*W).
    ``relu`` says a ReLU lies between them; ``constant_through`` that a channel that is constant
    reaches the consumer as the same constant everywhere (no BatchNorm, no padding on the way)."""

    producer: str
    consumer: str
    batchnorms: list[str]
    spatial: int
    relu: bool = False
    constant_through: bool = True


def next_count(channels: int, cols: int, rows: int) -> int:
    """The kept count after one step from ``channels`` on an array of ``rows`` x ``cols`` (module
    docstring; 0 means no step)."""
    if channels <= min(rows, cols):
        return channels - 1
    return max(lanes * ((channels - 1) // lanes) for lanes in (cols, rows))


def find_chains(module: fx.GraphModule) -> list[Chain]:
    """The layers whose output channels can be pruned, with their reader (module docstring)."""
    modules = dict(module.named_modules())
    chains = []
    for node in module.graph.nodes:
        if node.op == "call_module" and isinstance(modules[node.target], (nn.Conv2d, nn.Linear)):
            chain = _follow(node, modules)
            if chain is not None:
                chains.append(chain)
    return chains


def _readers(node: fx.Node) -> list[fx.Node]:
    return [user for user in node.users if not (
        (user.op == "call_method" and user.target in ("size", "dim"))
        or (user.op == "call_function" and user.target is getattr))]


def _follow(start: fx.Node, modules: dict) -> Chain | None:
    producer = modules[start.target]
    if isinstance(producer, nn.Conv2d) and producer.groups != 1:
        return None  # a grouped layer's output channels are tied to its input channels
    channels = producer.out_channels if isinstance(producer, nn.Conv2d) else producer.out_features
    node, flat, batchnorms = start, isinstance(producer, nn.Linear), []
    relu, constant = False, True
    while True:
        readers = _readers(node)
        if len(readers) != 1 or not readers[0].args or readers[0].args[0] is not node:
            return None
        reader = readers[0]
        target = modules.get(reader.target) if reader.op == "call_module" else None
        is_mean = (reader.op == "call_function" and reader.target is torch.mean) or (
            reader.op == "call_method" and reader.target == "mean")
        if is_mean and not _spatial_mean(reader):
            return None
        if isinstance(target, nn.Conv2d):
            if flat or target.groups != 1:
                return None
            return Chain(str(start.target), str(reader.target), batchnorms, 1, relu, constant)
        if isinstance(target, nn.Linear):
            if not flat or target.in_features % channels:
                return None
            return Chain(str(start.target), str(reader.target), batchnorms, target.in_features // channels, relu,
                         constant)
        relu = relu or isinstance(target, nn.ReLU) or (reader.op == "call_function" and reader.target in (
            F.relu, torch.relu)) or (reader.op == "call_method" and reader.target == "relu")
        if isinstance(target, (nn.ZeroPad2d, nn.ConstantPad2d, nn.AvgPool2d)) or (
                reader.op == "call_function" and reader.target in (F.pad, F.avg_pool2d)):
            constant = False  # padding (also an average pool's) makes a constant map uneven at the border
        if isinstance(target, (nn.BatchNorm1d, nn.BatchNorm2d)) and target.num_features == channels:
            batchnorms.append(str(reader.target))
            constant = False
        elif isinstance(target, nn.Flatten) or (reader.op == "call_function" and reader.target is torch.flatten) \
                or (reader.op == "call_method" and reader.target in _FLATTEN_METHODS):
            flat = True
        elif not (isinstance(target, _PASS_MODULES) or (reader.op == "call_function" and reader.target in _PASS_FUNCTIONS)
                  or (reader.op == "call_method" and reader.target in _PASS_METHODS)):
            return None
        node = reader


def _spatial_mean(node: fx.Node) -> bool:
    """A mean over the two spatial dimensions only (global average pooling keeps the channels)."""
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
    return all(isinstance(d, int) for d in dims) and sorted(d % 4 for d in dims) == [2, 3]


def layer_macs(module: fx.GraphModule, input_shape) -> dict[str, int]:
    """Multiply-accumulates per image of every Conv2d/Linear (by shape propagation)."""
    return {name: shape.c_in * shape.kernel_area * shape.c_out * shape.pixels
            for name, shape in layer_shapes(module, input_shape).items()}


@dataclass(frozen=True)
class _Shape:
    """What the pass count of a Conv2d/Linear needs: channels, kernel positions, output pixels
    (before pooling; 1 for a Linear)."""

    c_in: int
    c_out: int
    kernel_area: int
    pixels: int


def layer_shapes(module: fx.GraphModule, input_shape) -> dict[str, _Shape]:
    """The :class:`_Shape` of every Conv2d/Linear (by shape propagation)."""
    ShapeProp(module).propagate(torch.zeros((1,) + tuple(input_shape)))
    modules = dict(module.named_modules())
    shapes = {}
    for node in module.graph.nodes:
        if node.op == "call_module" and isinstance(modules[node.target], (nn.Conv2d, nn.Linear)):
            layer = modules[node.target]
            out = node.meta["tensor_meta"].shape
            shapes[str(node.target)] = _Shape(int(layer.weight.shape[1]), int(layer.weight.shape[0]),
                                              int(np.prod(layer.weight.shape[2:])), int(np.prod(out[2:])))
    return shapes


def _pass_cycles(shapes: dict[str, _Shape], chains: list[Chain], keep: dict, method: "PruneChannels") -> int:
    """Cycles of the array's passes with ``keep[producer]`` channels kept (module docstring)."""
    c_in = {name: shape.c_in for name, shape in shapes.items()}
    c_out = {name: shape.c_out for name, shape in shapes.items()}
    for chain in chains:
        c_out[chain.producer] = keep[chain.producer]
        c_in[chain.consumer] = keep[chain.producer] * chain.spatial
    min_pass = EngineConfig(rows=method.rows, cols=method.cols).min_pass
    return sum(-(-c_in[name] // method.rows) * -(-c_out[name] // method.cols) * shape.kernel_area
               * max(shape.pixels, min_pass) for name, shape in shapes.items())


def _macs(base: dict, chains: list[Chain], keep: dict, full: dict) -> int:
    """MACs with ``keep[producer]`` channels kept (the consumer's inputs scale the same way)."""
    scale = {name: 1.0 for name in base}
    for chain in chains:
        fraction = keep[chain.producer] / full[chain.producer]
        scale[chain.producer] *= fraction
        scale[chain.consumer] *= fraction
    return int(round(sum(base[name] * scale[name] for name in base)))


def _filter_order(layer: nn.Module) -> np.ndarray:
    """Output channels from the smallest L1 norm of their filter to the largest (ties: by index)."""
    norms = layer.weight.detach().abs().reshape(layer.weight.shape[0], -1).sum(dim=1).numpy()
    return np.argsort(norms, kind="stable")


def _input_columns(chain: Chain, channels) -> torch.Tensor:
    channels = torch.as_tensor(np.asarray(channels, dtype=np.int64))
    return (channels[:, None] * chain.spatial + torch.arange(chain.spatial)[None, :]).reshape(-1)


def input_means(module: fx.GraphModule, chains: list[Chain], data) -> dict[str, torch.Tensor]:
    """Mean of every chain consumer's input on the validation images, per input column of its
    weights: a Conv2d's input channel averaged over the map, a Linear's input feature."""
    sums, counts, hooks = {}, {}, []

    def record(name):
        def hook(_, inputs):
            x = inputs[0].detach()
            x = x.transpose(0, 1).reshape(x.shape[1], -1) if x.dim() == 4 else x.reshape(len(x), -1).T
            sums[name] = sums.get(name, 0) + x.sum(dim=1)
            counts[name] = counts.get(name, 0) + x.shape[1]
        return hook

    for name in {chain.consumer for chain in chains}:
        hooks.append(module.get_submodule(name).register_forward_pre_hook(record(name)))
    try:
        evaluate(module, data.x_validation, data.y_validation)
    finally:
        for hook in hooks:
            hook.remove()
    return {name: sums[name] / counts[name] for name in sums}


def _cut_inputs(consumer: nn.Module, columns: torch.Tensor, means: torch.Tensor) -> None:
    """Zero the consumer's weights that read ``columns`` and add what those inputs contributed on
    average to its bias, so a cut shifts the consumer's outputs by their mean no more (module
    docstring)."""
    weight = consumer.weight.detach()
    reads = weight[:, columns].reshape(weight.shape[0], len(columns), -1).sum(dim=2)
    if consumer.bias is None:
        consumer.bias = nn.Parameter(torch.zeros(weight.shape[0], dtype=weight.dtype))
    with torch.no_grad():
        consumer.bias.add_(reads @ means[columns])
        consumer.weight[:, columns] = 0


def _trial_loss(module, chain: Chain, removed, data, means: torch.Tensor) -> float:
    """Validation loss with ``removed`` channels of the chain cut, simulated by zeroing the
    consumer's weights that read them (their mean contribution moved into its bias)."""
    consumer = module.get_submodule(chain.consumer)
    weight = consumer.weight.detach().clone()
    bias = None if consumer.bias is None else consumer.bias.detach().clone()
    _cut_inputs(consumer, _input_columns(chain, removed), means)
    loss = evaluate(module, data.x_validation, data.y_validation)[0]
    with torch.no_grad():
        consumer.weight.copy_(weight)
        if bias is None:
            consumer.bias = None
        else:
            consumer.bias.copy_(bias)
    return loss


def _slice_outputs(layer: nn.Module, keep: torch.Tensor) -> nn.Module:
    if isinstance(layer, nn.Conv2d):
        new = nn.Conv2d(layer.in_channels, len(keep), layer.kernel_size, stride=layer.stride, padding=layer.padding,
                        dilation=layer.dilation, groups=layer.groups, bias=layer.bias is not None,
                        padding_mode=layer.padding_mode)
    else:
        new = nn.Linear(layer.in_features, len(keep), bias=layer.bias is not None)
    with torch.no_grad():
        new.weight.copy_(layer.weight[keep])
        if layer.bias is not None:
            new.bias.copy_(layer.bias[keep])
    return new


def _slice_inputs(layer: nn.Module, columns: torch.Tensor) -> nn.Module:
    if isinstance(layer, nn.Conv2d):
        new = nn.Conv2d(len(columns), layer.out_channels, layer.kernel_size, stride=layer.stride,
                        padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
                        bias=layer.bias is not None, padding_mode=layer.padding_mode)
    else:
        new = nn.Linear(len(columns), layer.out_features, bias=layer.bias is not None)
    with torch.no_grad():
        new.weight.copy_(layer.weight[:, columns])
        if layer.bias is not None:
            new.bias.copy_(layer.bias)
    return new


def _slice_batchnorm(bn, keep: torch.Tensor):
    new = type(bn)(len(keep), eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                   track_running_stats=bn.track_running_stats)
    with torch.no_grad():
        if bn.affine:
            new.weight.copy_(bn.weight[keep])
            new.bias.copy_(bn.bias[keep])
        if bn.track_running_stats:
            new.running_mean.copy_(bn.running_mean[keep])
            new.running_var.copy_(bn.running_var[keep])
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new


def remove_dead(state) -> dict:
    """Remove the channels that pruning left without input or output connections (Han et al. 2015,
    section 3.4) and return ``{producer: {"channels": before, "kept": after}}``.

    A channel whose filter is all zero outputs a constant, its bias (through ReLU when the chain
    has one): it is removed when that constant is zero, or, when the chain carries a constant
    unchanged (no BatchNorm or padding on the way) and the reader is a Linear or an unpadded
    Conv2d, after adding what it contributes to the reader's bias. A channel whose reader's
    weights for it are all zero is removed outright. Both are exact; a layer keeps one channel at
    least. Repeated until nothing changes."""
    removed = {}
    changed = True
    while changed:
        changed = False
        for chain in find_chains(state.module):
            producer = state.module.get_submodule(chain.producer)
            consumer = state.module.get_submodule(chain.consumer)
            dead = _dead_channels(chain, producer, consumer)
            if not dead.size or dead.size == producer.weight.shape[0]:
                continue
            _fold_constants(chain, producer, consumer, dead)
            channels = producer.weight.shape[0]
            kept = torch.from_numpy(np.setdiff1d(np.arange(channels), dead))
            _cut(state.module, chain, kept)
            removed.setdefault(chain.producer, {"channels": channels})["kept"] = len(kept)
            changed = True
    return removed


def _dead_channels(chain: Chain, producer, consumer) -> np.ndarray:
    channels = producer.weight.shape[0]
    no_input = producer.weight.detach().reshape(channels, -1).abs().sum(dim=1) == 0
    reads = consumer.weight.detach().abs()
    no_output = reads.reshape(reads.shape[0], channels, -1).sum(dim=(0, 2)) == 0
    constant = producer.bias.detach() if producer.bias is not None else torch.zeros(channels)
    if chain.relu:
        constant = torch.relu(constant)
    padded = isinstance(consumer, nn.Conv2d) and _has_padding(consumer)
    foldable = (constant == 0) | torch.tensor(chain.constant_through and not padded)
    return np.flatnonzero(((no_input & foldable) | no_output).numpy())


def _has_padding(conv: nn.Conv2d) -> bool:
    if isinstance(conv.padding, str):
        return conv.padding == "same" and conv.kernel_size != (1, 1)
    return any(p > 0 for p in conv.padding)


def _fold_constants(chain: Chain, producer, consumer, dead: np.ndarray) -> None:
    """Add the constant outputs of the ``dead`` channels, times the weights reading them, to the
    reader's bias (exact for the chains :func:`_dead_channels` lets through)."""
    channels = producer.weight.shape[0]
    if producer.bias is None:
        return
    constant = torch.relu(producer.bias.detach()) if chain.relu else producer.bias.detach()
    weight = consumer.weight.detach()
    per_channel = weight.reshape(weight.shape[0], channels, -1).sum(dim=2)  # (out, channels)
    contribution = per_channel[:, dead] @ constant[dead]
    if not torch.any(contribution != 0):
        return
    if consumer.bias is None:
        consumer.bias = nn.Parameter(torch.zeros(weight.shape[0], dtype=weight.dtype))
    with torch.no_grad():
        consumer.bias.add_(contribution)


def _cut(module: fx.GraphModule, chain: Chain, kept: torch.Tensor) -> None:
    """Keep only the channels ``kept`` of the chain: producer outputs, BatchNorms, reader inputs."""
    set_module(module, chain.producer, _slice_outputs(module.get_submodule(chain.producer), kept))
    for bn in chain.batchnorms:
        set_module(module, bn, _slice_batchnorm(module.get_submodule(bn), kept))
    set_module(module, chain.consumer, _slice_inputs(module.get_submodule(chain.consumer),
                                                     _input_columns(chain, kept.numpy())))


def choose(module: fx.GraphModule, chains: list[Chain], method: PruneChannels, data,
           input_shape) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """``(kept channels, filter order)`` per producer (module docstring): the greedy search on the
    validation loss; the first ``channels - kept`` of a producer's order are the ones to cut."""
    base = layer_macs(module, input_shape)
    shapes = layer_shapes(module, input_shape)
    full = {c.producer: module.get_submodule(c.producer).weight.shape[0] for c in chains}
    order = {c.producer: _filter_order(module.get_submodule(c.producer)) for c in chains}
    keep = dict(full)
    total = _macs(base, chains, keep, full)
    target = (1 - method.fraction) * total
    current = evaluate(module, data.x_validation, data.y_validation)[0]
    while _macs(base, chains, keep, full) > target:
        best = None
        macs, cycles = _macs(base, chains, keep, full), _pass_cycles(shapes, chains, keep, method)
        means = input_means(module, chains, data)
        for chain in chains:
            count = next_count(keep[chain.producer], method.cols, method.rows)
            if count < 1:
                continue
            trial = {**keep, chain.producer: count}
            saved_macs = macs - _macs(base, chains, trial, full)
            saved_cycles = cycles - _pass_cycles(shapes, chains, trial, method)
            if saved_macs <= 0:
                continue
            removed = order[chain.producer][: full[chain.producer] - count]
            loss = _trial_loss(module, chain, removed, data, means[chain.consumer])
            # steps that remove passes first, by loss per cycle; then the others, by loss per MAC
            score = (0, (loss - current) / saved_cycles) if saved_cycles > 0 else (1, (loss - current) / saved_macs)
            if best is None or score < best[0]:
                best = (score, chain, count, loss)
        if best is None:
            raise CompressionError(f"--prune-channels {method.fraction}: the prunable layers "
                                   f"({', '.join(full) or 'none'}) cannot remove that much of the compute")
        _, chain, count, current = best
        keep[chain.producer] = count
        # the cut stays in place (the slicing in apply removes the zeroed weights), so later trials
        # see every channel cut so far
        _cut_inputs(module.get_submodule(chain.consumer),
                    _input_columns(chain, order[chain.producer][: full[chain.producer] - count]), means[chain.consumer])
    return keep, order


def apply(state, method: PruneChannels, data, settings, *, stage: int) -> dict:
    """Prune channels of ``state.module`` as ``method`` says, then fine-tune; returns the report."""
    module = state.module
    chains = find_chains(module)
    if not chains:
        raise CompressionError("--prune-channels: no layer of the model has output channels that only one "
                               "Conv2d/Linear reads")
    before = layer_macs(module, state.input_shape)
    # the search leaves its cuts simulated (zeroed reader weights, biases compensated): slice them out
    keep, order = choose(module, chains, method, data, state.input_shape)
    layers = {}
    for chain in chains:
        producer = module.get_submodule(chain.producer)
        channels = producer.weight.shape[0]
        if keep[chain.producer] == channels:
            continue
        kept = torch.from_numpy(np.sort(order[chain.producer][channels - keep[chain.producer]:]))
        _cut(module, chain, kept)
        layers[chain.producer] = {"channels": channels, "kept": keep[chain.producer], "reader": chain.consumer}
        state.note(chain.producer, channels=f"{keep[chain.producer]}/{channels}")
    with zeros_kept(module, sorted(state.sparse)):
        fine_tune(module, data, settings, desc="prune channels", stage=stage * 100)
    after = layer_macs(module, state.input_shape)
    return {"method": "prune_channels", "requested": method.fraction, "criterion": "L1 norm of filters",
            "array_cols": method.cols, "array_rows": method.rows, "macs_before": sum(before.values()),
            "macs_after": sum(after.values()), "removed": 1 - sum(after.values()) / sum(before.values()),
            "layers": layers, "chains": [chain.producer for chain in chains]}
