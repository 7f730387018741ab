"""Fully connected layer: ``nn.Linear`` / ONNX ``Gemm`` and ``MatMul``, a 1x1 convolution of a
one-pixel map on the engine (docs/arithmetic.md §7); an average pool before it folds into its
weights (§10)."""

from __future__ import annotations

import numpy as np

from .. import golden, jobs
from ..engine_spec import DEFAULT_CONFIG, EngineConfig
from .base import Drawn, LayerOperation, add_arguments


def fc_input_limit(config: EngineConfig = DEFAULT_CONFIG) -> int:
    """The most inputs a Linear takes on ``config`` (:func:`radix.jobs.band_rows`): all its weight rows,
    one per input rounded up to whole array rows, fill one weight bank, and its input pixel groups
    the input buffer. An average pool folded into the Linear multiplies its inputs (§10)."""
    return min(config.wt_depth // config.rows, config.in_depth) * config.rows


def summed_form(weights: np.ndarray, *, channels: int, height: int, width: int, read_lanes: int, has_skip: bool,
                config: EngineConfig) -> np.ndarray | None:
    """The ``(C_out, C)`` weights of one summed job (``sum_pool``) for a fully connected layer over
    a ``C x H x W`` map whose weights repeat over the map's pixels (a global average pool folded
    into it, docs/arithmetic.md §10), reading ``C`` weights per output instead of ``C * H * W``;
    None when the layer is not such a layer (one pixel, a residual add, weights that differ over
    the pixels) or the map does not fit one job with ``read_lanes`` input lanes."""
    pixels = height * width
    if has_skip or pixels == 1:
        return None
    per_channel = golden.summed_weights(weights, channels, pixels)
    if per_channel is None or not jobs.summed_job_fits(c_in=read_lanes, height=height, width=width,
                                                       c_out=per_channel.shape[0], config=config):
        return None
    return per_channel


class FullyConnected(LayerOperation):
    """``(N, F_in) -> (N, F_out)``; its input flattened first."""

    name = "fully connected"
    kind = "fc"
    readme = (
        ("`nn.Linear`", "an engine layer (a 1x1 convolution of a 1x1 map); its input flattened first; at most "
                        f"{fc_input_limit():,} inputs on the default engine, of which a global average pool folded "
                        "into it counts only the channels (one summed job)"),
    )
    onnx_ops = {"Gemm": ("alpha", "beta", "transA", "transB"), "MatMul": ()}

    # -- recognition ---------------------------------------------------------------------------
    def torch_matches(self, node, module) -> bool:
        from torch import nn

        return isinstance(module, nn.Linear)

    def torch_problem(self, module) -> str | None:
        try:
            golden.check_reduction(module.in_features)
        except golden.ContractError as refusal:
            return str(refusal)
        return None

    def torch_step(self, walker, node, module, name: str, x):
        from ..ingest import FloatLayer
        from .average_pool import fold_into_linear
        from .torch_graph import INPUT, AvgPooled, Refused, bias_of

        note = ""
        if isinstance(x, AvgPooled) and x.flat:
            weight, source, note = fold_into_linear(module, x), x.source, f"average pooling {x.module} folded in (§10)"
            modules = [name, x.module]
            in_shape = (int(np.prod(source.shape)),)
        else:
            source = walker.materialise(x)
            if len(source.shape) != 1:
                raise Refused(f"Linear on a {'x'.join(map(str, source.shape))} map acts on its last dimension only: "
                              "flatten the map first (torch.flatten(x, 1) or x.view(x.size(0), -1))")
            weight, modules, in_shape = module.weight.detach().double().numpy().copy(), [name], source.shape
        if weight.shape[1] != in_shape[0]:
            if source.name == INPUT:
                walker.note_input_mismatch(name, "Linear", "features", weight.shape[1])
            raise Refused(f"expects {weight.shape[1]} inputs, gets {in_shape[0]}")
        golden.check_reduction(in_shape[0])
        layer = FloatLayer(name, self.kind, modules, [source.name], weight, bias_of(module, weight.shape[0]),
                           in_shape=in_shape, out_shape=(weight.shape[0],))
        return walker.new_layer(layer), note

    def onnx_convert(self, importer, node, inputs, attrs) -> list:
        x = importer.runtime(inputs[0])
        if node.op_type == "MatMul":  # nn.Linear multiplies the last dimension as MatMul does, on any rank
            return [importer.linear(x, importer.constant(inputs[1], ndim=2).T, None)]
        b = importer.constant(inputs[1], ndim=2)
        if attrs.get("transA", 0):
            importer.unmapped()
        weight = b if attrs.get("transB", 0) else b.T
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        if alpha != 1.0:
            weight = weight * np.float32(alpha)
        bias = None
        if len(inputs) > 2 and inputs[2] is not None:
            c = importer.constant(inputs[2])
            if c.size not in (1, weight.shape[0]) or (c.ndim == 2 and c.shape[0] != 1) or c.ndim > 2:
                importer.unmapped()  # a term per batch row
            bias = np.broadcast_to(c.reshape(-1), (weight.shape[0],))
            if beta != 1.0:
                bias = bias * np.float32(beta)
        return [importer.linear(x, weight, bias)]

    # -- contract and geometry -----------------------------------------------------------------
    def geometry(self, layer) -> jobs.Geometry:
        return jobs.geometry_of(kind="fc", in_shape=layer.in_shape, c_out=layer.out_shape[0], kernel=1, stride=1,
                                padding=(0, 0, 0, 0), pool=False)

    def run(self, layer, inputs: list, *, width: int) -> golden.Requantized:
        x = np.reshape(inputs[0], (inputs[0].shape[0], -1))
        args = add_arguments(layer, inputs, (x.shape[0], -1))
        return golden.linear(x, layer.weights, layer.bias, shift=layer.shift, relu=layer.relu, width=width, **args)

    def torch_map(self, layer, x, weight, bias):
        import torch.nn.functional as F

        return F.linear(x.reshape(x.shape[0], -1), weight, bias)

    def runs_summed(self, layer, source_shape: tuple, config: EngineConfig) -> bool:
        """Whether the layer (a float layer) over a ``(C, H, W)`` map runs as one summed job per
        image (:func:`summed_form`), so that only its ``C`` weights per output count against the
        weight bank."""
        if len(source_shape) != 3:
            return False
        channels, height, width = source_shape
        return summed_form(layer.weight, channels=channels, height=height, width=width, read_lanes=channels,
                           has_skip=layer.skip is not None, config=config) is not None

    # -- on the engine -------------------------------------------------------------------------
    def reads_narrow(self, layer, index: int, shape) -> bool:
        return index == 0 and shape[1:] == (1, 1)

    def place(self, builder, layer) -> None:
        cfg = builder.config
        src, out = builder.tensors[layer.inputs[0]], builder.tensors[layer.name]
        c_out = int(layer.weights.shape[0])
        summed = summed_form(layer.weights, channels=src.channels, height=src.height, width=src.width,
                             read_lanes=builder.read_lanes(src.words), has_skip=layer.skip is not None, config=cfg)
        if summed is not None:
            core, in_ch, physical = builder.physical_weights(layer, src, src.words, np.asarray(src.lanes),
                                                             summed.reshape(summed.shape + (1, 1)))
            wt_addr = builder.weight_block(layer, physical)
            builder.summed_jobs(layer, src, out, builder.layer_fields(layer, src, out, in_ch=in_ch, out_ch=c_out,
                                                                      wt_addr=wt_addr))
            return
        read_words = src.height * src.width * src.pixel_words
        # the input as one pixel: pixel (y, x) of the storage is words (y*W + x)*P .., its lanes
        # follow; torch's flatten order is c*H*W + y*W + x
        pixel = np.arange(src.height * src.width).reshape(1, src.height, src.width)
        lanes = ((pixel * src.pixel_words + src.word_offset) * cfg.lanes_per_word
                 + np.asarray(src.lanes).reshape(-1, 1, 1)).reshape(-1)
        if layer.weights.shape[1] != lanes.size:
            builder.refuse(layer, f"{layer.weights.shape[1]} input features, but its input {src.name} holds "
                                  f"{lanes.size} values")
        core, in_ch, physical = builder.physical_weights(layer, src, read_words, lanes,
                                                         layer.weights.reshape(c_out, -1, 1, 1))
        wt_addr = builder.weight_block(layer, physical)
        skip = builder.skip_tensor(layer) if layer.skip is not None else None
        common = builder.layer_fields(layer, src, out, in_ch=in_ch, out_ch=c_out, wt_addr=wt_addr, skip=skip)
        builder.fc_jobs(layer, src, out, skip, dict(common, in_pixel_words=read_words))

    # -- tests ---------------------------------------------------------------------------------
    def random_layer(self, rng, config, draw) -> Drawn:
        """A vector of features, or (two times in five) a map whose weights repeat over its
        pixels: a pooled classifier (§10), which the engine runs as one summed job."""
        lo, hi = draw.weight_range
        c_out = int(rng.integers(1, 3 * config.cols + 2))
        if rng.random() < 0.4:
            channels, h, w = int(rng.integers(1, 3 * config.rows + 2)), *(int(v) for v in rng.integers(1, 9, 2))
            in_shape: tuple = (channels, h, w)
            weights = np.repeat(rng.integers(lo, hi + 1, (c_out, channels)), h * w, axis=1)
        else:
            features = int(rng.integers(1, 4 * config.rows + 3))
            in_shape, weights = (features,), rng.integers(lo, hi + 1, (c_out, features))
        return Drawn(kind=self.kind, in_shape=in_shape, out_shape=(c_out,), skip_shape=(c_out,), weights=weights)
