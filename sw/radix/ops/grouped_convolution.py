"""Grouped and depthwise convolution: ``nn.Conv2d(groups=g)`` / ONNX ``Conv`` with ``group``
(docs/arithmetic.md §7; ``groups = C_in = C_out`` is depthwise).

On the array each chunk of output channels runs as a dense job over the input tiles its groups
read, with block-diagonal weights (docs/engine.md, "Grouped convolutions").
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..engine_spec import canonical_lane, input_group_words
from .base import Drawn
from .convolution import Convolution


class GroupedConvolution(Convolution):
    """A convolution whose output channels each read one group of ``C_in / groups`` input channels."""

    name = "grouped convolution"
    readme = (
        ("`nn.Conv2d(groups=g)`", "as `nn.Conv2d`, `g` dividing both channel counts (depthwise: `groups = C`): "
                                  "block-diagonal jobs on the array, exact but slow (docs/engine.md)"),
    )
    onnx_ops = {}  # ONNX Conv with a group attribute: the convolution's converter makes the nn.Conv2d
    takes_add = False  # its output tiles run as separate job sets: an add after it is an identity layer

    def claims(self, layer) -> bool:
        return layer.kind == self.kind and layer.groups > 1

    def torch_matches(self, node, module) -> bool:
        from torch import nn

        return isinstance(module, nn.Conv2d) and module.groups > 1

    def torch_note(self, module) -> str:
        depthwise = module.groups == module.in_channels == module.out_channels
        return (f"{'depthwise' if depthwise else 'grouped'}: runs on the array as block-diagonal jobs, exact but slow "
                "(docs/engine.md)")

    def place(self, builder, layer) -> None:
        """One dense job set per chunk of output channels: the chunk reads only the input tiles
        that hold its groups' input channels, with block-diagonal weights over those lanes. A chunk
        is an output tile (``cols`` channels), or, for a depthwise layer (one input channel per
        group) whose tensors' lanes are the channels, the ``rows * C_out/groups`` channels of one
        input tile, so that no job reads an input tile for a few of its channels."""
        cfg = builder.config
        src, out = builder.tensors[layer.inputs[0]], builder.tensors[layer.name]
        if layer.skip is not None:
            builder.refuse(layer, "a grouped convolution with a residual add (the add belongs to an identity layer "
                                  "after it)")
        if (src.channels, src.height, src.width) != tuple(layer.in_shape):
            builder.refuse(layer, f"reads {src.name} of shape {src.shape}, but its input is {tuple(layer.in_shape)}")
        c_out, per_group_in = layer.weights.shape[:2]
        per_group_out = c_out // layer.groups
        lanes = np.asarray(src.lanes)
        first_job = 0
        chunk = cfg.rows * per_group_out
        if not (per_group_in == 1 and chunk <= cfg.cols and cfg.tile_lanes == cfg.cols
                and chunk % cfg.lanes_per_word == 0 and cfg.rows % cfg.lanes_per_word == 0):
            chunk = cfg.cols  # an output tile: its lanes start a word whatever the layout
        for first in range(0, c_out, chunk):
            last = min(first + chunk, c_out)
            lo, hi = first // per_group_out * per_group_in, ((last - 1) // per_group_out + 1) * per_group_in
            # whole input tiles around the lanes of input channels lo .. hi - 1 (a narrow input's one word)
            group = input_group_words(cfg, narrow=src.narrow)
            start = int(lanes[lo:hi].min()) // cfg.lanes_per_word // group * group
            end = -(-(int(lanes[lo:hi].max()) // cfg.lanes_per_word + 1) // group) * group
            if src.word_offset + end > src.pixel_words:
                builder.refuse(layer, f"the input tiles of output channels {first}..{last - 1} run past the "
                                      f"{src.pixel_words}-word pixels of {src.name}")
            view = dataclasses.replace(src, word_offset=src.word_offset + start, words=end - start,
                                       lanes=tuple(int(v) - start * cfg.lanes_per_word for v in lanes))
            core = builder.core_lanes(np.asarray(view.lanes[lo:hi]), layer, view)
            in_ch = builder.read_lanes(end - start)
            physical = np.zeros((last - first, in_ch) + tuple(layer.kernel), dtype=np.int64)
            for c in range(first, last):
                group_start = c // per_group_out * per_group_in - lo
                physical[c - first, core[group_start:group_start + per_group_in]] = layer.weights[c]
            # a chunk of few channels folds like any convolution: its block-diagonal weights are
            # dense weights over its lanes
            fold, band_config, physical = builder.fold_plan(layer, core, in_ch, physical)
            wt_addr = builder.weight_block(layer, physical, slice(first, last))
            target = dataclasses.replace(out, word_offset=out.word_offset
                                         + canonical_lane(first, cfg) // cfg.lanes_per_word)
            common = builder.layer_fields(layer, view, target, in_ch=in_ch, out_ch=last - first, wt_addr=wt_addr)
            first_job += builder.conv_jobs(layer, view, target, None, in_ch, common, first_job=first_job, fold=fold,
                                           band_config=band_config)

    def random_layer(self, rng, config, draw) -> Drawn:
        """Depthwise half of the time, else any divisor of ``C_in`` above 1 as the groups (one
        input channel: one group, a dense convolution); a depth multiplier of 1 or 2."""
        c_in = draw.c_in
        divisors = [g for g in range(2, c_in + 1) if c_in % g == 0] or [1]
        groups = c_in if rng.random() < 0.5 else int(rng.choice(divisors))
        c_out = groups * int(rng.integers(1, 3))
        return self.random_convolution(rng, draw, c_in=c_in, c_out=c_out, groups=groups, can_add=groups == 1)
