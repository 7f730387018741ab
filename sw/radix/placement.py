"""Lay a program out in the memory of the bus-master engine (engine version 13), once, at load.

docs/engine.md, "Memory and commands", defines the layout this module makes: every tensor (the
network input, every layer's output) gets one address per image of the batch, its pixels in
raster order, each ``P`` 64-bit words with channel ``c`` in lane ``engine_spec.canonical_lane(c)``;
a concatenation is one tensor whose parts are written side by side in every pixel (each part's
producer writes at its word offset), so a concatenation costs no command. Each conv/fc layer gets
one weight block (bias words and weight rows per output tile, the layer's weights scattered to
the lanes its input tensor's channels occupy), shared by all its jobs. The command list runs the
layers in program order, each layer's jobs (bands of output rows, :mod:`radix.jobs`, per image;
a fully connected layer over several images at once) one command each.

Memory, from ``base``: the tensors, the weight blocks, the commands, one stats word per command;
each region starts on a 4 KB boundary from ``base`` and the size is a multiple of 4 KB, so the
layout does not depend on ``base`` (place once to learn the size, allocate, place at the buffer's
address). Numpy only (runs on the board).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import golden, jobs, ops, space_to_depth, stream_format, tap_fold
from .command_exec import command_error
from .cycle_model import ListClock, fastest_order
from .engine_errors import EngineMismatch
from .engine_spec import (BUS_ADDR_BITS, BUS_BYTES, COMMAND_BYTES, COMMAND_FIELD, OPCODE_CONV, EngineConfig,
                          can_be_narrow, canonical_lane, computed_map, encode_command, pair,
                          pixel_words, skip_shift_range, tensor_lanes, written_map)
from .errors import InputError
from .program import INPUT, Layer, Program

REGION_ALIGN = 4096  # regions (and the whole buffer) are whole 4 KB pages
TENSOR_ALIGN = 64  # tensors and weight blocks start on a cache line (the board flushes by line)


class PlacementError(EngineMismatch):
    """The program cannot be laid out for this bus-master engine; the message names the layer or
    tensor and the reason."""


@dataclass(frozen=True)
class TensorPlace:
    """Where one tensor lives in memory.

    ``addr`` is image 0's first byte of the *storage* tensor (a concatenation's, for one of its
    parts), ``pixel_words`` the storage's words per pixel (the pixel stride), ``word_offset`` and
    ``words`` the words of every pixel this tensor occupies, ``lanes[c]`` the lane of channel
    ``c`` counted from ``word_offset``. Image ``b`` starts ``b * image_bytes`` after image 0.
    """

    name: str
    shape: tuple[int, ...]  # per image, as radix.network.run gives it: (C, H, W) or (F,)
    height: int
    width: int
    addr: int
    word_offset: int
    words: int
    pixel_words: int
    lanes: tuple[int, ...]
    unsigned: bool
    narrow: bool = False  # one word a pixel (engine_spec.can_be_narrow): its readers' jobs set narrow_in

    @property
    def channels(self) -> int:
        """The tensor's channels (the features of a vector)."""
        return len(self.lanes)

    @property
    def image_bytes(self) -> int:
        """Bytes of one image's copy of the storage tensor."""
        return self.height * self.width * self.pixel_words * BUS_BYTES

    @property
    def view_addr(self) -> int:
        """Byte address of image 0's first word of this tensor (``addr`` plus the word offset)."""
        return self.addr + self.word_offset * BUS_BYTES


@dataclass(frozen=True)
class CommandInfo:
    """One command of the list: its layer, the images it computes (several for a batched fully
    connected layer), its job (band) index within the layer for those images, its fields and the
    address of its stats word."""

    index: int
    layer: str
    images: tuple[int, ...]
    job: int
    fields: dict
    stat_addr: int


@dataclass
class Placement:
    """A program laid out in memory: the memory image and how to read and write its tensors.

    ``memory`` holds ``memory_bytes // 8`` words from bus address ``base``: the weight blocks and
    the commands, tensors and stats words zero. ``weights[layer] = (addr, words)`` locates each
    layer's weight block.
    """

    program: Program
    config: EngineConfig
    batch: int
    base: int
    memory_bytes: int
    memory: np.ndarray
    cmd_base: int
    tensors: dict[str, TensorPlace]
    weights: dict[str, tuple[int, int]]
    commands: list[CommandInfo]
    externals: tuple[str, ...] = ()
    input_blocks: space_to_depth.SpaceToDepth | None = None  # the input written space-to-depth

    @property
    def cmd_count(self) -> int:
        """Commands in the list (the engine's CMD_COUNT)."""
        return len(self.commands)

    def input_words(self, x_q, name: str = INPUT) -> tuple[int, np.ndarray]:
        """``(byte offset from base, words)`` that write the quantized images ``x_q`` (N, C, H, W),
        ``N <= batch``, into the network input's tensor (or the external tensor ``name``). Where the input is part of a
        concatenation the words cover the concatenation's pixels, the other parts zero: write
        them before the engine runs."""
        if name != INPUT and name not in self.externals:
            raise InputError(f"tensor {name!r} is neither the network input nor an external tensor")
        place = self.tensors[name]
        x = np.asarray(x_q, dtype=np.int64)
        shape = tuple(self.program.input_shape) if name == INPUT else place.shape
        if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape or not 1 <= x.shape[0] <= self.batch:
            raise InputError(f"input images of shape {tuple(x.shape)} do not fit the placement's input: up to "
                             f"{self.batch} images of {shape}")
        golden.check_values(x, self.program.width, unsigned=place.unsigned, what="the input images")
        if name == INPUT and self.input_blocks is not None:
            x = self.input_blocks.images(x)
        pixels = place.height * place.width
        maps = x.reshape(x.shape[0], place.channels, pixels)
        lanes = np.zeros((x.shape[0], pixels, place.pixel_words * self.config.lanes_per_word), dtype=np.int64)
        lanes[:, :, place.word_offset * self.config.lanes_per_word + np.asarray(place.lanes)] = maps.transpose(0, 2, 1)
        words = stream_format.pack_lanes(lanes.reshape(-1, lanes.shape[-1]), width=self.config.width)
        return place.addr - self.base, words

    def tensor(self, memory_words, name: str, image: int = 0) -> np.ndarray:
        """Tensor ``name`` of image ``image`` read back from ``memory_words`` (the buffer's words
        from ``base``): integers of the tensor's signedness, in its logical shape."""
        if name not in self.tensors:
            raise InputError(f"no tensor {name!r} in the placement; known: {', '.join(self.tensors)}")
        place = self.tensors[name]
        if not 0 <= image < self.batch:
            raise InputError(f"image {image} outside the placement's batch of {self.batch}")
        start = (place.addr - self.base + image * place.image_bytes) // BUS_BYTES
        words = np.asarray(memory_words, dtype=np.uint64)[start : start + place.image_bytes // BUS_BYTES]
        own = words.reshape(-1, place.pixel_words)[:, place.word_offset : place.word_offset + place.words]
        lanes = stream_format.unpack_lanes(own.reshape(-1), lanes=place.words * self.config.lanes_per_word,
                                           width=self.config.width, unsigned=place.unsigned)
        values = lanes[:, np.asarray(place.lanes)].T.reshape(place.shape)
        if name == INPUT and self.input_blocks is not None:
            return self.input_blocks.image(values)
        return values

    def logits(self, memory_words) -> np.ndarray:
        """The last layer's output of every image, ``(batch, F)``."""
        name = self.program.layers[-1].name
        return np.stack([self.tensor(memory_words, name, b).reshape(-1) for b in range(self.batch)])

    def command_stats(self, memory_words) -> list[tuple[int, int]]:
        """``(cycles from START, saturated outputs)`` of every command, from its stats word."""
        words = np.asarray(memory_words, dtype=np.uint64)
        out = []
        for info in self.commands:
            word = int(words[(info.stat_addr - self.base) // BUS_BYTES])
            out.append((word & 0xFFFFFFFF, word >> 32))
        return out


def place(program: Program, config: EngineConfig, *, batch: int = 1, base: int = 0,
          externals: dict[str, tuple[tuple, bool]] | None = None,
          order: Callable[[dict], dict] | None = None) -> Placement:
    """Lay ``program`` out for ``batch`` images in a buffer at bus address ``base`` (64-byte aligned).

    Raises :class:`PlacementError` naming the layer for what the engine cannot run: a program of
    another width, a layer that does not fit the buffers, a skip tensor not in the output's
    canonical lanes, a channel in a lane the reading layer cannot see, a field that overflows.
    ``externals`` names tensors the layers read that no layer makes, ``{name: (shape, unsigned)}``
    (e.g. a random test layer's skip tensor): they are placed like the input and written with
    :meth:`Placement.input_words`. ``order`` gives each job's stream order fields (``strip_rows``,
    ``weights_first``) from its other command fields; by default the fastest by the cycle model
    (a self-test draws them at random instead, to cover every order on the engine).
    """
    if program.width != config.width:
        raise PlacementError(f"program is {program.width}-bit, the engine's DATA_WIDTH is {config.width}: "
                             f"recalibrate with --bits {config.width}")
    if batch < 1:
        raise PlacementError(f"batch {batch}: place at least one image")
    if base % COMMAND_BYTES or base < 0:
        raise PlacementError(f"base address 0x{base:X} is not {COMMAND_BYTES}-byte aligned")
    program.check_signedness("program")
    externals = dict(externals or {})
    input_blocks = space_to_depth.plan(program, config)
    engine_program = program if input_blocks is None else space_to_depth.rewrite(program, input_blocks)
    tensors, tensor_bytes = _place_tensors(engine_program, config, batch, base, externals)
    builder = _Builder(engine_program, config, batch, tensors, weight_base=base + _round_up(tensor_bytes, REGION_ALIGN))
    for layer in engine_program.layers:
        builder.add_layer(layer)
    cmd_base = _round_up(builder.weight_end, REGION_ALIGN)
    stat_base = _round_up(cmd_base + len(builder.jobs) * COMMAND_BYTES, REGION_ALIGN)
    memory_bytes = _round_up(stat_base + len(builder.jobs) * BUS_BYTES, REGION_ALIGN) - base
    if base + memory_bytes > 1 << BUS_ADDR_BITS:
        raise PlacementError(f"{memory_bytes} bytes from 0x{base:X} reach beyond the engine's "
                             f"{BUS_ADDR_BITS}-bit addresses")
    memory = np.zeros(memory_bytes // BUS_BYTES, dtype=np.uint64)
    for addr, words in builder.blocks:
        memory[(addr - base) // BUS_BYTES : (addr - base) // BUS_BYTES + words.size] = words
    commands = []
    clock = ListClock(config)  # each job's order chosen as the list's next job (its head loaded ahead)
    for index, (layer_name, images, job, fields) in enumerate(builder.jobs):
        previous = commands[-1].fields if commands else None
        first_of_layer = index == 0 or builder.jobs[index - 1][0] != layer_name
        fields = dict(dict.fromkeys(COMMAND_FIELD, 0), **fields, sync=int(first_of_layer), stats=1,
                      stat_addr=stat_base + index * BUS_BYTES)
        fields["input_ahead"], fields["input_follows"] = _load_ahead(fields, previous, config)
        fields.update(fastest_order(config, fields, clock=clock) if order is None else order(fields))
        clock.job(fields)
        where = f"layer {layer_name} job {job + 1} (images {images[0]}..{images[-1]})"
        problem = command_error(fields, config, previous)
        if problem is not None:
            raise PlacementError(f"{where}: the engine would refuse the command: {problem[1]}")
        try:
            words = encode_command(**fields)
        except ValueError as exc:
            raise PlacementError(f"{where}: {exc}") from None
        start = (cmd_base - base) // BUS_BYTES + index * len(words)
        memory[start : start + len(words)] = words
        commands.append(CommandInfo(index, layer_name, images, job, fields, fields["stat_addr"]))
    return Placement(program, config, batch, base, memory_bytes, memory, cmd_base, tensors, builder.weights, commands,
                     tuple(externals), input_blocks)


def _load_ahead(fields: dict, previous: dict | None, config: EngineConfig) -> tuple[int, int]:
    """``(input_ahead, input_follows)`` of a job after ``previous`` (docs/engine.md, "The input
    loads ahead", "The input follows the job before"): its input loads while the job before
    computes wherever the engine's checks allow it (neither job folded, their input bands within
    IN_DEPTH together), and follows the job before's writes row by row where the job before
    writes some of the bytes it reads (from the first byte each command touches to its last)."""
    if previous is None:
        return 0, 0
    # the bytes from the first each job touches to its last (a band's rows, a pixel's first words)
    pitch = max(1, fields["in_row_pitch"]) * fields["in_w"]
    group = 1 if fields["narrow_in"] else -(-fields["in_ch"] // config.rows) * config.in_words
    read_start = fields["in_addr"] + fields["in_y0"] * pitch * fields["in_pixel_words"] * BUS_BYTES
    read_end = fields["in_addr"] + (((fields["in_y0"] + fields["in_h"] - 1) * pitch + fields["in_w"] - 1)
                                    * fields["in_pixel_words"] + group) * BUS_BYTES
    rows, width = written_map(previous["out_h"], previous["out_w"], pool=bool(previous["pool"]),
                              sum_pool=bool(previous["sum_pool"]))
    write_start = previous["out_addr"] + previous["out_y0"] * width * previous["out_pixel_words"] * BUS_BYTES
    write_end = previous["out_addr"] + (((previous["out_y0"] + rows) * width) * previous["out_pixel_words"]) * BUS_BYTES
    follows = int(read_start < write_end and write_start < read_end)
    if command_error(dict(fields, input_ahead=1, input_follows=follows), config, previous) is not None:
        return 0, 0
    return 1, follows


def _round_up(value: int, align: int) -> int:
    return -(-value // align) * align


def _shape3(shape) -> tuple[int, int, int]:
    """A tensor's ``(C, H, W)``: a vector of ``F`` features is ``F`` channels of one pixel."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 1:
        return shape[0], 1, 1
    if len(shape) == 3:
        return shape
    raise PlacementError(f"tensor shape {shape}: the engine holds (C, H, W) maps and (F,) vectors")


def _place_tensors(program: Program, config: EngineConfig, batch: int, base: int, externals: dict):
    """Every tensor's :class:`TensorPlace`, and the bytes of the tensor region."""
    shapes = {INPUT: tuple(program.input_shape), **{name: tuple(shape) for name, (shape, _) in externals.items()},
              **{layer.name: tuple(layer.out_shape) for layer in program.layers}}
    unsigned = {**program.tensor_unsigned(), **{name: bool(u) for name, (_, u) in externals.items()}}
    narrow = _narrow_tensors(program, shapes, config)
    words, lanes, parent = {}, {}, {}
    for name in [INPUT, *externals] + [layer.name for layer in program.layers]:
        channels = _shape3(shapes[name])[0]
        words[name] = 1 if name in narrow else pixel_words(tensor_lanes(channels, config), config)
        lanes[name] = [canonical_lane(c, config) for c in range(channels)]
    for layer in program.layers:
        if layer.operation.has_weights:
            continue
        joined, offset = [], 0
        for index, part in enumerate(layer.inputs):
            if part in parent:
                where = (f"twice part of concatenation {layer.name}" if parent[part][0] == layer.name else
                         f"part of both concatenations {parent[part][0]} and {layer.name}")
                raise PlacementError(f"tensor {part} is {where}: it would need two places in memory")
            recorded = layer.input_shapes[index] if index < len(layer.input_shapes) else shapes[part]
            if _shape3(recorded) != _shape3(shapes[part]) or _shape3(shapes[part])[1:] != _shape3(layer.out_shape)[1:]:
                raise PlacementError(f"concatenation {layer.name}: part {part} of shape {shapes[part]} does not "
                                     f"lie side by side with the output {tuple(layer.out_shape)}")
            parent[part] = (layer.name, offset)
            joined += [offset * config.lanes_per_word + lane for lane in lanes[part]]
            offset += words[part]
        if len(joined) != _shape3(layer.out_shape)[0]:
            raise PlacementError(f"concatenation {layer.name}: its parts hold {len(joined)} channels, its output "
                                 f"{_shape3(layer.out_shape)[0]}")
        words[layer.name], lanes[layer.name] = offset, joined
    # storage: each tensor outside every concatenation gets its own; a part lives in its parent's
    storage, offsets, addr = {}, {}, base
    for name in words:
        if name not in parent:
            height, width = _shape3(shapes[name])[1:]
            storage[name], offsets[name] = addr, 0
            addr = _round_up(addr + batch * height * width * words[name] * BUS_BYTES, TENSOR_ALIGN)
    for name in reversed(list(words)):  # a concatenation is placed before its parts (it comes later)
        if name in parent:
            owner, offset = parent[name]
            storage[name], offsets[name] = storage[owner], offsets[owner] + offset
    places = {}
    for name in words:
        root = name
        while root in parent:
            root = parent[root][0]
        _, height, width = _shape3(shapes[name])
        places[name] = TensorPlace(name=name, shape=shapes[name], height=height, width=width, addr=storage[name],
                                   word_offset=offsets[name], words=words[name], pixel_words=words[root],
                                   lanes=tuple(lanes[name]), unsigned=bool(unsigned[name]), narrow=name in narrow)
    return places, addr - base


def _narrow_tensors(program: Program, shapes: dict, config: EngineConfig) -> set[str]:
    """The tensors stored narrow, one word a pixel (``engine_spec.can_be_narrow``): those whose
    channels fit a word and which every layer reading them reads as the main input of a
    convolution (grouped or not), or of a fully connected layer when the tensor is one pixel
    (its ``narrow_in`` jobs stream a word per pixel, half or less of an input tile). A skip, a
    concatenation or its part, or a many-pixel fully connected layer's input keeps whole input
    tiles."""
    readers: dict[str, list[tuple[Layer, int]]] = {}
    for layer in program.layers:
        for index, name in enumerate(layer.inputs):
            readers.setdefault(name, []).append((layer, index))

    def reads_narrow(layer: Layer, index: int, name: str) -> bool:
        return layer.skip != name and layer.operation.reads_narrow(layer, index, _shape3(shapes[name]))

    concatenated = {name for layer in program.layers if layer.operation is ops.CONCATENATION
                    for name in (layer.name, *layer.inputs)}
    return {name for name, shape in shapes.items()
            if name not in concatenated and can_be_narrow(tensor_lanes(_shape3(shape)[0], config), config)
            and all(reads_narrow(layer, index, name) for layer, index in readers.get(name, []))}


class _Builder:
    """Collects the weight blocks and the jobs of the layers in program order."""

    def __init__(self, program: Program, config: EngineConfig, batch: int, tensors: dict, weight_base: int):
        self.program, self.config, self.batch, self.tensors = program, config, batch, tensors
        self.weight_end = weight_base
        self.blocks: list[tuple[int, np.ndarray]] = []
        self.weights: dict[str, tuple[int, int]] = {}
        self.jobs: list[tuple[str, tuple[int, ...], int, dict]] = []

    def add_layer(self, layer: Layer) -> None:
        """Lay out a layer's weights and append its jobs: its operation knows how (:mod:`radix.ops`)."""
        layer.operation.place(self, layer)

    def layer_fields(self, layer: Layer, src: TensorPlace, out: TensorPlace, *, in_ch: int, out_ch: int,
                     wt_addr: int, skip: TensorPlace | None = None) -> dict[str, int]:
        """The command fields every job of a layer shares: its flags, channels, weight block and the
        tensors' pixel layouts (the bands and images set the rest)."""
        fields = dict(opcode=OPCODE_CONV, relu=int(layer.relu), add=int(skip is not None),
                      in_unsigned=int(layer.unsigned_in), skip_unsigned=int(skip is not None and layer.unsigned_skip),
                      out_unsigned=int(layer.unsigned_out), in_ch=in_ch, out_ch=out_ch,
                      in_pixel_words=src.pixel_words, narrow_in=int(src.narrow), out_pixel_words=out.pixel_words,
                      out_word_offset=out.word_offset, out_height=out.height, wt_addr=wt_addr)
        if skip is not None:
            fields.update(skip_pixel_words=skip.pixel_words, skip_height=skip.height, skip_width=skip.width)
        return fields

    def core_lanes(self, lanes: np.ndarray, layer: Layer, src: TensorPlace) -> np.ndarray:
        """The array lanes (input channels of the job) that read memory lanes ``lanes`` of ``src``.

        Input tile ``t`` is the ``in_words`` words from word ``t * in_words`` of a pixel and carries
        ``rows`` lanes; the lanes after them in those words are never read (only when ``rows * W`` is
        not a multiple of 64), so a channel there cannot be read at all."""
        config = self.config
        group = config.in_words * config.lanes_per_word
        tile, lane = np.divmod(lanes, group)
        if np.any(lane >= config.rows):
            bad = int(np.flatnonzero(lane >= config.rows)[0])
            self.refuse(layer, f"its input {src.name} holds a channel in memory lane {int(lanes[bad])}, which the "
                               f"engine never reads: an input tile is {config.rows} lanes of {group} in "
                               f"{config.in_words} word(s) ({config.rows}x{config.cols} at W={config.width} cannot "
                               f"feed a layer with a tensor whose channels fill an output tile's {config.cols} lanes)")
        return tile * config.rows + lane

    def refuse(self, layer: Layer, problem: str) -> None:
        """Raise the :class:`PlacementError` that ``layer`` cannot be placed for ``problem``."""
        raise PlacementError(f"layer {layer.name}: {problem}")

    def physical_weights(self, layer: Layer, src: TensorPlace, read_words: int, lanes: np.ndarray,
                         weights: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
        """``(core, in_ch, physical)`` of a job reading ``read_words`` words per pixel of ``src``
        whose input channels sit in memory lanes ``lanes``: the array lanes they reach, the job's
        input lanes and ``weights`` ``(C_out, C, KH, KW)`` spread over those lanes."""
        core = self.core_lanes(lanes, layer, src)
        in_ch = self.read_lanes(read_words)
        physical = np.zeros((weights.shape[0], in_ch) + tuple(weights.shape[2:]), dtype=np.int64)
        physical[:, core] = weights
        return core, in_ch, physical

    def fold_plan(self, layer: Layer, core: np.ndarray, in_ch: int, physical: np.ndarray):
        """``(fold, band_config, weights)`` of a convolution's jobs whose input channels sit in
        array lanes ``core`` of ``in_ch`` (``physical``: their weights over those lanes): folded
        where that saves passes and the band still fits (radix.tap_fold), else ``(None, config,
        physical)``."""
        fold = tap_fold.plan(channels=core.size, lanes_in_order=bool(np.array_equal(core, np.arange(core.size))),
                             in_ch=in_ch, kernel_w=physical.shape[3], config=self.config)
        band_config = None if fold is None else _fold_config(self.config, fold, layer, in_ch)
        if band_config is None:  # no fold, or the band would not fit beside its F - 1 extra pixel groups
            return None, self.config, physical
        return fold, band_config, fold.weights(physical)

    def read_lanes(self, read_words: int) -> int:
        """The lanes (a job's ``in_ch``) of the input tiles in ``read_words`` words per pixel (a
        narrow input's one word: one tile)."""
        return -(-read_words // self.config.in_words) * self.config.rows

    def weight_block(self, layer: Layer, physical: np.ndarray, channels: slice = slice(None)) -> int:
        """Place the bias words and weight rows (docs/engine.md) of the layer's output ``channels``
        (all by default), whose weights over the job's lanes are ``physical``; return the block's
        address."""
        cfg = self.config
        c_out = physical.shape[0]
        shift = golden.clamp_shift(layer.shift[channels], cfg.width)
        skip_shift = np.zeros(c_out, dtype=np.int64)
        if layer.skip is not None:
            lowest = skip_shift_range(cfg.width, unsigned=layer.unsigned_skip)[0]
            if np.any(layer.skip_shift < lowest):
                raise PlacementError(f"layer {layer.name}: skip shift {int(layer.skip_shift.min())} below the "
                                     f"engine's {lowest} for a{'n unsigned' if layer.unsigned_skip else ' signed'} "
                                     f"skip (docs/arithmetic.md §9)")
            skip_shift = np.minimum(layer.skip_shift, skip_shift_range(cfg.width)[1])
        tiles = stream_format.tiles(c_out, cfg.cols)
        # lanes past the last channel add their skip shifted by W + 1, i.e. zero: a skip read
        # beyond its tensor's words (inside a concatenation) cannot reach an output lane
        lane_skip_shift = np.full(tiles * cfg.cols, cfg.width + 1, dtype=np.int64)
        lane_skip_shift[:c_out] = skip_shift
        lane_bias = np.zeros(tiles * cfg.cols, dtype=np.int64)
        lane_bias[:c_out] = layer.bias[channels]
        lane_shift = np.zeros(tiles * cfg.cols, dtype=np.int64)
        lane_shift[:c_out] = shift
        parts = []
        for tile in range(tiles):
            lanes = slice(tile * cfg.cols, (tile + 1) * cfg.cols)
            head = stream_format.bias_words(lane_bias[lanes], lane_shift[lanes],
                                            lane_skip_shift[lanes] if layer.skip is not None else 0)
            rows = stream_format.cotile_words(physical, 0, 0, tile, cfg)[cfg.cols :]  # past its bias words
            parts += [head, rows]
        block = np.concatenate(parts)
        addr = self.weight_end
        self.blocks.append((addr, block))
        self.weights[layer.name] = (addr, int(block.size))
        self.weight_end = _round_up(addr + block.size * BUS_BYTES, TENSOR_ALIGN)
        return addr

    def skip_tensor(self, layer: Layer) -> TensorPlace:
        """The skip tensor, refused unless its channels sit in the output's canonical lanes in a map
        of the convolution's (pre-pooling) shape."""
        skip = self.tensors[layer.skip]
        c_out = int(layer.weights.shape[0])
        conv_h, conv_w = layer.conv_shape
        want = tuple(canonical_lane(c, self.config) for c in range(c_out))
        if (skip.height, skip.width) != (conv_h, conv_w) or skip.lanes != want:
            raise PlacementError(
                f"layer {layer.name}: its skip tensor {skip.name} ({skip.channels} channels of {skip.height}x"
                f"{skip.width} pixels{', part of a concatenation' if skip.pixel_words != skip.words else ''}) is not "
                f"laid out as the output's {c_out} channels of {conv_h}x{conv_w} pixels in their canonical lanes: "
                f"the engine adds a skip lane by lane")
        return skip

    def conv_jobs(self, layer: Layer, src: TensorPlace, out: TensorPlace, skip, in_ch: int, common: dict, *,
                   first_job: int = 0, fold: tap_fold.TapFold | None = None,
                   band_config: EngineConfig | None = None) -> int:
        """The band jobs of a convolution for every image, numbered from ``first_job``; returns the
        bands per image. With ``fold`` the jobs run folded (radix.tap_fold), their bands cut for
        ``band_config`` (:func:`_fold_config`)."""
        geometry = dataclasses.replace(layer.geometry(), c_in=in_ch, groups=1)
        if fold is not None:
            geometry = _folded(geometry, fold)
        try:
            bands = jobs.bands(geometry, band_config or self.config)
        except jobs.LayerFitError as exc:
            raise PlacementError(f"layer {layer.name}: {exc}") from None
        _, comp_w = computed_map(geometry.out_h, geometry.out_w, layer.pool)
        div = 2 if layer.pool else 1
        view = _sampling_view(geometry) if fold is None else None  # a fold reads every column
        for image in range(self.batch):
            for index, (r0, rows) in enumerate(bands):
                y0, y1 = geometry.input_rows(r0, rows)
                fields = dict(common, pool=int(layer.pool), **window_fields(layer.kernel, layer.stride),
                              pad_top=y0 - (r0 * geometry.stride[0] - geometry.pad_top), pad_left=geometry.pad_left,
                              in_h=y1 - y0, in_w=geometry.width, out_h=rows, out_w=comp_w,
                              in_addr=src.view_addr + image * src.image_bytes, in_y0=y0, in_height=src.height,
                              out_y0=r0 // div, out_addr=out.addr + image * out.image_bytes)
                if view is not None:
                    fields.update(**window_fields(1, 1), in_y0=r0, in_h=rows, in_w=view[0], in_row_pitch=view[1],
                                  in_height=src.height // geometry.stride[0],
                                  in_pixel_words=src.pixel_words * geometry.stride[1])
                if skip is not None:
                    fields.update(skip_addr=skip.view_addr + image * skip.image_bytes, skip_y0=r0)
                if fold is not None:
                    fields.update(fold.fields())
                self.jobs.append((layer.name, (image,), first_job + index, fields))
        return len(bands)

    def summed_jobs(self, layer: Layer, src: TensorPlace, out: TensorPlace, common: dict) -> None:
        """One job per image that sums the whole input map's products into the output vector."""
        for image in range(self.batch):
            fields = dict(common, sum_pool=1, **window_fields(1, 1), in_h=src.height, in_w=src.width, out_h=src.height,
                          out_w=src.width, in_addr=src.view_addr + image * src.image_bytes, in_height=src.height,
                          out_addr=out.addr + image * out.image_bytes)
            self.jobs.append((layer.name, (image,), 0, fields))

    def fc_jobs(self, layer: Layer, src: TensorPlace, out: TensorPlace, skip, common: dict) -> None:
        """A fully connected layer reads each image's input as one pixel; several images make a
        map one pixel high (image ``b``'s input is pixel ``b``: its copies are ``image_bytes``
        apart), so one job reads the weights once for all of them (the FC batching)."""
        cfg = self.config
        geometry = jobs.geometry_of(kind="fc", in_shape=(common["in_ch"],), c_out=common["out_ch"], kernel=1,
                                    stride=1, padding=(0, 0, 0, 0), pool=False)
        try:
            jobs.band_rows(geometry, cfg)
        except jobs.LayerFitError as exc:
            raise PlacementError(f"layer {layer.name}: {exc}") from None
        t_in = common["in_ch"] // cfg.rows
        per_job = min(self.batch, cfg.in_depth // t_in, cfg.acc_depth, jobs.REGISTER_FIELD_MAX)
        for index, first in enumerate(range(0, self.batch, per_job)):
            images = tuple(range(first, min(first + per_job, self.batch)))
            fields = dict(common, **window_fields(1, 1), in_h=1, in_w=len(images), out_h=1, out_w=len(images),
                          in_addr=src.addr + first * src.image_bytes, in_height=1,
                          out_addr=out.addr + first * out.image_bytes)
            if skip is not None:
                fields.update(skip_addr=skip.view_addr + first * skip.image_bytes, skip_width=len(images))
            self.jobs.append((layer.name, images, index, fields))


def _folded(geometry: jobs.Geometry, fold: tap_fold.TapFold) -> jobs.Geometry:
    """A folded job's geometry: its kernel ``KH x ceil(KW / F)``."""
    return dataclasses.replace(geometry, kernel=(geometry.kernel[0], fold.folded_kernel_w))


def _fold_config(config: EngineConfig, fold: tap_fold.TapFold, layer: Layer, in_ch: int) -> EngineConfig | None:
    """The engine as a folded job's bands see it: a folded job's input buffer holds its band from
    address ``F - 1`` on (docs/engine.md, "Few-channel layers"); None if no band fits then."""
    if config.in_depth <= fold.taps - 1:
        return None
    folded = dataclasses.replace(config, in_depth=config.in_depth - (fold.taps - 1))
    try:
        jobs.bands(_folded(dataclasses.replace(layer.geometry(), c_in=in_ch, groups=1), fold), folded)
    except jobs.LayerFitError:
        return None
    return folded


def _sampling_view(geometry: jobs.Geometry) -> tuple[int, int] | None:
    """``(width, row pitch)`` of the view a convolution reads when it only samples its input: a 1x1
    kernel with a horizontal stride, no padding and strides that divide the map (ResNet's
    projection shortcuts); None for any other.

    Such a job reads its input as a stride-1 map whose pixels are every SW-th pixel (the pixel
    stride times SW), ``W / SW`` of them a row, exactly the sampled ones, and whose rows are every
    SH-th row (``in_row_pitch = SH``: rows ``SH * W / SW`` view pixels apart): it streams
    ``1 / (SH * SW)`` of the map. The view covers the same bytes as the tensor, so it reads
    nothing outside it.
    """
    (sh, sw), g = geometry.stride, geometry
    if g.kernel != (1, 1) or sw == 1 or g.pool or g.pad_top or g.pad_left:  # SW = 1: the bands read less
        return None
    if g.height % sh or g.width % sw or (g.out_h, g.out_w) != (g.height // sh, g.width // sw):
        return None
    return g.width // sw, sh


def window_fields(kernel, stride) -> dict[str, int]:
    """A job's kernel and stride command fields from one int (square) or ``(vertical, horizontal)``."""
    (kh, kw), (sh, sw) = pair(kernel, "kernel"), pair(stride, "stride")
    return dict(kernel_h=kh, kernel_w=kw, stride_h=sh, stride_w=sw)
