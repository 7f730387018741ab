"""What the compression methods share (host only, torch): the model as a torch.fx graph, its weight
layers, the training data, fine-tuning and evaluation.

Fine-tuning is plain CPU torch on the data's training split: Adam with a cosine decay of the
learning rate over the stage, cross-entropy, shuffled mini-batches from a seeded generator, so a
run is reproducible (with one thread, as ``radix compress`` sets).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from ..console import progress as progress_bar
from ..data_checks import check_images
from ..datasets import load_split
from . import CompressionError

WEIGHT_TYPES = (nn.Conv2d, nn.Linear)
EVAL_BATCH = 500


@dataclass(frozen=True, kw_only=True)
class FineTune:
    """Fine-tuning of every method: ``epochs`` passes over the training images (0: none) with Adam at
    ``lr``, mini-batches of ``batch_size``, shuffled from ``seed``; ``augment``, when given, is
    called as ``augment(images, generator)`` on every batch (e.g. ``radix_models.train``'s
    ``random_affine``, as the built-in LeNet-5 was trained); ``show_progress`` draws bars on
    stderr (when it is a terminal)."""

    epochs: int = 6
    lr: float = 2e-3
    batch_size: int = 64
    seed: int = 0
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    show_progress: bool = True

    def __post_init__(self):
        if not isinstance(self.epochs, int) or not 0 <= self.epochs <= 1000:
            raise CompressionError(f"--epochs {self.epochs!r}: must be an integer 0..1000")
        if not isinstance(self.lr, (int, float)) or not 0 < self.lr <= 1:
            raise CompressionError(f"--lr {self.lr!r}: must be in (0, 1]")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise CompressionError(f"batch size {self.batch_size!r}: must be a positive integer")
        if not isinstance(self.seed, int):
            raise CompressionError(f"seed {self.seed!r}: must be an integer")
        if self.augment is not None and not callable(self.augment):
            raise CompressionError(f"augmentation {self.augment!r}: must be a function of (images, generator)")


@dataclass
class TrainingData:
    """Float images and labels as tensors: ``train`` for fine-tuning, ``validation`` (a seeded subset
    of ``train``) for sensitivity analyses, ``test`` for the accuracies reported."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_validation: torch.Tensor
    y_validation: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @classmethod
    def load(cls, data: str, *, images: int | None = None, validation_images: int = 1000, seed: int = 0,
             classes: int | None = None) -> tuple["TrainingData", list[str]]:
        """The splits of a data set (radix.datasets); ``images`` keeps a seeded random subset of the
        training split (the named sets are sorted by class, so never the first N). Returns the data
        and warnings."""
        if images is not None and (not isinstance(images, int) or images < 1):
            raise CompressionError(f"--images {images!r}: must be a positive integer")
        x, y = load_split(data, "train")
        x_test, y_test = load_split(data, "test")
        warnings = check_images(x, y, source=f"{data} (train split)", classes=classes)
        warnings += [w for w in check_images(x_test, y_test, source=f"{data} (test split)", classes=classes)
                     if w not in warnings]
        if str(data).endswith(".npz"):
            warnings.append(f"{data}: an .npz is one set, so fine-tuning and the accuracies use the same images")
        rng = np.random.default_rng(seed)
        if images is not None and images < len(y):
            keep = np.sort(rng.permutation(len(y))[:images])
            x, y = x[keep], y[keep]
        validation = np.sort(rng.permutation(len(y))[: min(validation_images, len(y))])
        arrays = (x, y, x[validation], y[validation], x_test, y_test)
        return cls(*(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)), warnings


def prepare(model: nn.Module) -> fx.GraphModule:
    """The model as an fx graph ready for compression: BatchNorm after a Conv2d/Linear that nothing
    else reads is folded into it (docs/arithmetic.md §8: the engine's weights are the folded ones,
    so the methods compress those), and ``view``/``reshape`` to ``(N, features)`` says ``-1`` for
    the features, so that changing channel counts keeps the graph valid. ``model`` itself is left
    as it is (the graph holds a copy)."""
    try:
        graph_module = fx.symbolic_trace(copy.deepcopy(model).eval())
    except Exception as exc:  # fx raises many exception types for untraceable code
        raise CompressionError(f"model {type(model).__name__}: cannot be traced with torch.fx ({exc})") from None
    modules = dict(graph_module.named_modules())
    for node in list(graph_module.graph.nodes):
        if node.op == "call_method" and node.target in ("view", "reshape") and len(node.args) == 3 \
                and isinstance(node.args[2], int):
            node.args = (node.args[0], node.args[1], -1)
        if node.op != "call_module" or not isinstance(modules[node.target], (nn.BatchNorm1d, nn.BatchNorm2d)):
            continue
        source = node.args[0]
        if not (isinstance(source, fx.Node) and source.op == "call_module" and len(source.users) == 1
                and isinstance(modules[source.target], WEIGHT_TYPES)):
            continue
        bn, layer = modules[node.target], modules[source.target]
        if not bn.track_running_stats or bn.running_mean is None:
            continue
        fused = fuse_conv_bn_eval(layer, bn) if isinstance(layer, nn.Conv2d) else fuse_linear_bn_eval(layer, bn)
        set_module(graph_module, source.target, fused)
        node.replace_all_uses_with(source)
        graph_module.graph.erase_node(node)
        graph_module.delete_submodule(node.target)
    graph_module.graph.lint()
    graph_module.recompile()
    return graph_module.eval()


def retrace(graph_module: fx.GraphModule) -> fx.GraphModule:
    """The graph traced again, after a module was replaced by a container (SVD's pair of layers)."""
    return fx.symbolic_trace(graph_module).eval()


def weight_layers(graph_module: fx.GraphModule) -> list[tuple[str, nn.Module]]:
    """The Conv2d and Linear modules called by the graph, in graph order, by qualified name."""
    modules = dict(graph_module.named_modules())
    seen, layers = set(), []
    for node in graph_module.graph.nodes:
        if node.op == "call_module" and isinstance(modules[node.target], WEIGHT_TYPES) and node.target not in seen:
            seen.add(node.target)
            layers.append((str(node.target), modules[node.target]))
    return layers


def set_module(graph_module: nn.Module, target: str, module: nn.Module) -> None:
    """Replace the submodule at the qualified name ``target``."""
    parent, _, leaf = target.rpartition(".")
    setattr(graph_module.get_submodule(parent) if parent else graph_module, leaf, module)


def kind_of(module: nn.Module) -> str:
    return "conv" if isinstance(module, nn.Conv2d) else "fc"


def evaluate(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """``(mean cross-entropy, top-1)`` of ``module`` in eval mode."""
    module.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(y), EVAL_BATCH):
            logits = module(x[start : start + EVAL_BATCH]).reshape(len(y[start : start + EVAL_BATCH]), -1)
            loss += float(F.cross_entropy(logits, y[start : start + EVAL_BATCH], reduction="sum"))
            correct += int((logits.argmax(dim=1) == y[start : start + EVAL_BATCH]).sum())
    return loss / len(y), correct / len(y)


def fine_tune(module: nn.Module, data: TrainingData, settings: FineTune, *, desc: str, stage: int = 0) -> float | None:
    """Train ``module`` for ``settings.epochs`` epochs; returns the last epoch's mean training loss
    (None without epochs). ``stage`` varies the shuffling seed between stages of one run."""
    if settings.epochs == 0:
        return None
    torch.manual_seed(settings.seed + stage)
    generator = torch.Generator().manual_seed(settings.seed + stage)
    trainable = [p for p in module.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(trainable, lr=settings.lr)
    batches = -(-len(data.y_train) // settings.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=settings.epochs * batches)
    bar = progress_bar(range(settings.epochs * batches), desc=desc, total=settings.epochs * batches,
                       enabled=settings.show_progress)
    ticks = iter(bar)
    module.train()
    mean = None
    for _ in range(settings.epochs):
        total = 0.0
        for batch in torch.randperm(len(data.y_train), generator=generator).split(settings.batch_size):
            optimiser.zero_grad()
            images = data.x_train[batch]
            if settings.augment is not None:
                images = settings.augment(images, generator)
            loss = F.cross_entropy(module(images), data.y_train[batch])
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(batch)
            next(ticks, None)
        mean = total / len(data.y_train)
    if hasattr(bar, "close"):
        bar.close()
    module.eval()
    return mean


class ZeroMask(nn.Module):
    """Parametrization keeping pruned weights at zero: ``weight = original * mask``; the masked
    weights get no gradient, so fine-tuning cannot revive them."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


@contextlib.contextmanager
def zeros_kept(graph_module: fx.GraphModule, names):
    """Within the block the zeros of the layers ``names`` stay zero (a :class:`ZeroMask` each);
    on leaving, the masked weights are written back as plain parameters."""
    modules = dict(graph_module.named_modules())
    masked = []
    for name in names:
        module = modules[name]
        parametrize.register_parametrization(module, "weight", ZeroMask(module.weight.detach() != 0))
        masked.append(module)
    try:
        yield
    finally:
        for module in masked:
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)


def count_parameters(graph_module: fx.GraphModule) -> tuple[int, int, int, int]:
    """``(weights, nonzero weights, biases, nonzero biases)`` of the Conv2d/Linear layers."""
    weights = nonzero = biases = nonzero_biases = 0
    for _, module in weight_layers(graph_module):
        weights += module.weight.numel()
        nonzero += int(torch.count_nonzero(module.weight))
        if module.bias is not None:
            biases += module.bias.numel()
            nonzero_biases += int(torch.count_nonzero(module.bias))
    return weights, nonzero, biases, nonzero_biases
