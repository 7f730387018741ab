"""Fine-tuning through the engine's arithmetic: quantization-aware training of a calibrated graph.

``radix calibrate --finetune N`` calibrates as usual, then trains the float (BatchNorm-folded)
weights and biases of the model's own Conv2d/Linear layers for ``N`` epochs on the labelled
calibration images (an autoencoder's on its inputs), with every forward pass computing exactly what the engine computes
(docs/arithmetic.md): the input, weights and biases quantized with round half up and saturation
to each tensor's range, signed or unsigned (§1, §2, §4), exact integer accumulation (§3), the residual add's aligned skip (§9), the data shift,
ReLU, saturation (§5) and max pooling (§6). The rounding steps pass gradients straight through
(the straight-through estimator; zero outside a saturating range), as quantization-aware training
does. The fractional lengths stay those of the calibration during training; afterwards the graph
is calibrated again, so the program stays an ordinary calibration of a float graph and is
bit-exact with the engine like any other. A fifth of the calibration images is held out of
training, and the fine-tuned program replaces the first one only if it does at least as well on
them (:func:`finetune_program`).

The forward pass holds integers in float64 tensors: every value is an integer below 2^53, so
convolution sums are exact and, before training changes a weight, the forward pass reproduces
the golden model's integers (a test checks it). Host only (torch).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from . import golden
from .calibrate import sqnr_db
from .engine_spec import skip_shift_range
from .errors import InputError
from .ingest import INPUT, FloatGraph, FloatLayer
from .program import Layer, Program


class FinetuneError(InputError):
    """Fine-tuning cannot run on what it was given (e.g. no labels); the message says why."""


@dataclass(frozen=True, kw_only=True)
class FinetuneSettings:
    """Epochs, Adam learning rate, mini-batch size and the seed of the shuffling."""

    epochs: int
    lr: float = 1e-4
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise FinetuneError(f"--finetune {self.epochs!r}: the number of epochs must be a positive integer")
        if not (isinstance(self.lr, (int, float)) and np.isfinite(self.lr) and self.lr > 0):
            raise FinetuneError(f"--finetune-lr {self.lr!r}: the learning rate must be a positive number")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise FinetuneError(f"batch size {self.batch_size!r} must be a positive integer")


def trainable(layer: FloatLayer) -> bool:
    """A model's own Conv2d/Linear; the layers that stand for an average pool or an identity keep
    their fixed weights."""
    return layer.operation.has_weights and not layer.role


class EngineArithmetic(torch.nn.Module):
    """The program's arithmetic as a differentiable torch module over the graph's float weights.

    ``forward(x)`` takes float images and returns every tensor's integers (float64) by name; the
    last layer's are the logits' integers, ``logits_scale`` turns them into float logits.
    """

    def __init__(self, graph: FloatGraph, program: Program):
        super().__init__()
        self.graph = graph
        self.program = program
        self.layers = {layer.name: layer for layer in program.layers}
        missing = [layer.name for layer in graph.layers if layer.name not in self.layers]
        if missing:
            raise FinetuneError(f"the program has no layer {missing[0]!r} of the graph: calibrate it from this model")
        self.weights = torch.nn.ParameterDict()
        self.biases = torch.nn.ParameterDict()
        for layer in graph.engine_layers():
            key = _key(layer.name)
            train = trainable(layer)
            # with bias correction the program quantized the float bias plus its correction
            bias = np.asarray(layer.bias, dtype=np.float64) + np.asarray(
                self.layers[layer.name].stats.get("bias_correction", 0.0))
            self.weights[key] = torch.nn.Parameter(torch.tensor(layer.weight, dtype=torch.float64), requires_grad=train)
            self.biases[key] = torch.nn.Parameter(torch.tensor(bias), requires_grad=train)

    @property
    def logits_scale(self) -> float:
        return float(np.ldexp(1.0, -self.program.layers[-1].fl_out))

    def forward(self, x) -> dict[str, torch.Tensor]:
        program = self.program
        lo, hi = golden.tensor_range(program.width, unsigned=program.input_unsigned)
        tensors = {INPUT: _quantize(torch.as_tensor(x, dtype=torch.float64) * 2.0 ** program.input_fl, lo, hi)}
        for layer in self.graph.layers:
            fixed = self.layers[layer.name]
            inputs = [tensors[name] for name in layer.inputs]
            if not layer.operation.has_weights:
                tensors[layer.name] = layer.operation.torch_forward(layer, inputs)
            else:
                tensors[layer.name] = self._layer(layer, fixed, inputs)
        return tensors

    def _layer(self, layer: FloatLayer, fixed: Layer, inputs: list[torch.Tensor]) -> torch.Tensor:
        width = self.program.width
        weight, bias = self.weights[_key(layer.name)], self.biases[_key(layer.name)]
        fl_w = torch.tensor(np.asarray(fixed.fl_w, dtype=np.float64))
        w_lo, w_hi = golden.int_range(fixed.weight_bits)
        w_int = _quantize(weight * (2.0 ** fl_w).reshape((-1,) + (1,) * (weight.dim() - 1)), w_lo, w_hi)
        b_lo, b_hi = golden.int_range(golden.acc_width(width) - 1)
        b_int = _quantize(bias * 2.0 ** (fixed.fl_in + fl_w), b_lo, b_hi)  # §4: at fl_b = fl_in + fl_w
        acc = layer.operation.torch_map(layer, inputs[0], w_int, b_int)
        if fixed.skip is not None:  # §9: the skip tensor at the accumulator's alignment
            skip = inputs[1].reshape(acc.shape)
            shifts = np.minimum(np.asarray(fixed.skip_shift), skip_shift_range(width)[1])
            acc = acc + _round_shift(skip, _per_channel(shifts, acc.dim()))
        if fixed.pool:  # §6: an odd last row or column is never computed
            acc = acc[..., : acc.shape[-2] - acc.shape[-2] % 2, : acc.shape[-1] - acc.shape[-1] % 2]
        r = _round_shift(acc, _per_channel(golden.clamp_shift(fixed.shift, width), acc.dim()))
        if fixed.relu:
            r = torch.relu(r)
        lo, hi = golden.tensor_range(width, unsigned=fixed.unsigned_out)
        y = _clamp_ste(r, lo, hi)
        return F.max_pool2d(y, 2) if fixed.pool else y


def finetune(graph: FloatGraph, program: Program, x, y, settings: FinetuneSettings, *, task: str = "classify",
             progress=None) -> tuple[FloatGraph, dict]:
    """Train ``graph``'s float weights through ``program``'s arithmetic.

    ``task`` ``"classify"`` minimises the cross-entropy of the logits against the labels ``y``;
    ``"reconstruct"`` (autoencoders) the mean squared error of the output against the input.
    Returns the graph with the trained weights (calibrate it again to get the program) and a
    report: epochs, the mean loss of the first and last epoch and, when classifying, the training
    top-1 of the integer network before and after. ``progress(epoch)`` is called after each epoch.
    """
    if task not in ("classify", "reconstruct"):
        raise FinetuneError(f"unknown fine-tuning task {task!r}")
    classify = task == "classify"
    if classify:
        if y is None or len(y) != len(x):
            raise FinetuneError("--finetune needs labelled calibration images (an .npz with y, or a named data set)")
        classes = int(np.prod(program.layers[-1].out_shape))
        labels = torch.as_tensor(np.asarray(y), dtype=torch.int64)
        if int(labels.min()) < 0 or int(labels.max()) >= classes:
            raise FinetuneError(f"--finetune: labels outside the model's {classes} classes")
    model = EngineArithmetic(graph, program)
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise FinetuneError("--finetune: the model has no Conv2d/Linear weights to train")
    optimizer = torch.optim.Adam(parameters, lr=settings.lr)
    generator = torch.Generator().manual_seed(settings.seed)
    images = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    before = _top1(model, images, labels) if classify else None
    losses = []
    for epoch in range(settings.epochs):
        order = torch.randperm(len(images), generator=generator)
        total = 0.0
        for start in range(0, len(images), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            out = model(images[batch])[program.layers[-1].name].reshape(len(batch), -1) * model.logits_scale
            if classify:
                loss = F.cross_entropy(out, labels[batch])
            else:
                loss = F.mse_loss(out, images[batch].reshape(len(batch), -1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        losses.append(total / len(images))
        if progress:
            progress(epoch + 1)
    trained = FloatGraph(graph.input_shape, [_with_weights(layer, model) for layer in graph.layers])
    report = {"epochs": settings.epochs, "lr": settings.lr, "task": task, "loss_first_epoch": losses[0],
              "loss_last_epoch": losses[-1]}
    if classify:
        report.update(train_top1_before=before, train_top1_after=_top1(model, images, labels))
    return trained, report


VALIDATION_SHARE = 0.2  # of the labelled calibration images, held out to judge the fine-tuned program
VALIDATION_SEED = 0


def finetune_program(graph: FloatGraph, program: Program, x, y, settings: FinetuneSettings, recalibrate, *,
                     task: str = "classify", progress=None) -> tuple[FloatGraph, Program, dict]:
    """Fine-tune on most of the calibration images and keep whichever program does best on the
    images held out from training: ``program`` itself, the trained weights quantized with the fls
    the training used (:func:`requantized`: exactly the network the training optimised), or the
    trained graph calibrated again by ``recalibrate(graph)``. Scores are top-1 against the labels,
    or, reconstructing, the negated mean squared error; a tie keeps the earlier. Training through
    the rounding lowers the training loss, which need not carry over to new images, and a new
    calibration may move the fls the weights were trained for. Returns the graph and program kept
    and the report of :func:`finetune` with every candidate's held-out score."""
    n = len(x)
    order = np.random.default_rng(VALIDATION_SEED).permutation(n)
    held = np.sort(order[: max(1, round(VALIDATION_SHARE * n))]) if n > 1 else order
    fit = np.sort(order[len(held):]) if n > 1 else order
    labels = None if y is None else np.asarray(y)
    trained, report = finetune(graph, program, x[fit], None if labels is None else labels[fit], settings, task=task,
                               progress=progress)
    candidates = [("calibrated, not fine-tuned", graph, program),
                  ("fine-tuned, at the fls it was trained with", trained, requantized(program, trained)),
                  ("fine-tuned, calibrated again", trained, recalibrate(trained))]
    scores = [_held_out_score(candidate, x[held], None if labels is None else labels[held], task)
              for _, _, candidate in candidates]
    best = int(np.argmax(scores))  # the first of equal scores
    report.update(held_out_images=int(len(held)), held_out_metric="top1" if task == "classify" else "-mse",
                  held_out_scores={name: score for (name, _, _), score in zip(candidates, scores)},
                  kept=candidates[best][0])
    return candidates[best][1], candidates[best][2], report


def requantized(program: Program, trained: FloatGraph) -> Program:
    """``program`` with the trained graph's weights and biases quantized at the fls it has (the
    network :class:`EngineArithmetic` trained); statistics that no longer hold are dropped and the
    weights' SQNR and saturated biases measured again."""
    out = copy.deepcopy(program)
    floats = {layer.name: layer for layer in trained.layers}
    for layer in out.layers:
        if not layer.operation.has_weights or not trainable(floats[layer.name]):
            continue
        weight, bias = floats[layer.name].weight, floats[layer.name].bias
        fl_w = np.asarray(layer.fl_w).reshape((-1,) + (1,) * (weight.ndim - 1))
        layer.weights = golden.quantize(weight, fl_w, layer.weight_bits)
        fl_b = layer.fl_in + np.asarray(layer.fl_w)
        layer.bias = golden.quantize_bias(bias, fl_b, out.width)
        scaled_bias = np.floor(np.asarray(bias, dtype=np.float64) * np.ldexp(1.0, fl_b) + 0.5)
        weight_sqnr = sqnr_db(weight, np.ldexp(layer.weights.astype(np.float64), -fl_w))
        layer.stats = {"weight_sqnr_db": None if math.isinf(weight_sqnr) else round(weight_sqnr, 3),  # JSON
                       "bias_saturated": int(np.count_nonzero(scaled_bias != layer.bias)), "finetuned": True}
    return out


def _held_out_score(program: Program, x, y, task: str) -> float:
    """Higher is better: top-1 of the integer program, or its reconstruction's negated mean
    squared error."""
    from . import network

    logits = network.logits(program, x)
    if task == "classify":
        return float(np.mean(network.predict(logits) == y))
    out = np.ldexp(logits.astype(np.float64), -program.layers[-1].fl_out)
    return -float(np.mean((np.asarray(x, dtype=np.float64).reshape(len(x), -1) - out) ** 2))


def _with_weights(layer: FloatLayer, model: EngineArithmetic) -> FloatLayer:
    if not trainable(layer):
        return layer
    key = _key(layer.name)
    return replace(layer, weight=model.weights[key].detach().numpy().copy(),
                   bias=model.biases[key].detach().numpy().copy())


def _top1(model: EngineArithmetic, images: torch.Tensor, labels: torch.Tensor, batch: int = 256) -> float:
    """Top-1 of the integer network (the first largest logit wins, §7)."""
    correct = 0
    with torch.no_grad():
        for start in range(0, len(images), batch):
            logits = model(images[start : start + batch])[model.program.layers[-1].name]
            predicted = logits.reshape(logits.shape[0], -1).argmax(dim=1)
            correct += int((predicted == labels[start : start + batch]).sum())
    return correct / len(images)


def _key(name: str) -> str:
    """A layer name as a ParameterDict key (module names hold dots, which it refuses)."""
    return name.replace(".", "__")


def _per_channel(values, ndim: int) -> torch.Tensor:
    values = torch.as_tensor(np.asarray(values, dtype=np.float64).reshape(-1))
    return values.reshape((1, -1) + (1,) * (ndim - 2)) if values.numel() > 1 else values.reshape(())


def _round_half_up(v: torch.Tensor) -> torch.Tensor:
    """``floor(v + 1/2)`` (§2, §5) with the gradient of the identity."""
    return v + (torch.floor(v + 0.5) - v).detach()


def _clamp_ste(v: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Saturation: the gradient passes inside the range and is zero where a value saturates."""
    return torch.clamp(v, lo, hi)


def _quantize(scaled: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """§2 on an already scaled tensor: round half up, then saturate."""
    return _clamp_ste(_round_half_up(scaled), lo, hi)


def _round_shift(acc: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """§5's data shift on integers: ``floor(acc / 2^s + 1/2)`` for ``s > 0``, exact ``acc * 2^-s``
    otherwise (both exact in float64 for the contract's accumulators)."""
    scaled = acc * 2.0 ** (-shift)
    return torch.where(shift > 0, _round_half_up(scaled), scaled)
