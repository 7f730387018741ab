"""Run a TFLite model with ai-edge-litert's reference kernels, for the converters' checks and the
benchmarks against MLCommons' TFLite models (host only; ai-edge-litert is in the ``bench`` extra)."""

from __future__ import annotations

import numpy as np


class TFLiteRunner:
    """A TFLite model run with ai-edge-litert's reference kernels (no delegate, every tensor kept):
    ``run(x)`` takes PyTorch-layout float inputs (``(N, C, H, W)`` or ``(N, F)``) and returns
    ``(logits, output)`` as float64: the tensor before the final softmax (the output itself when
    there is none) and the model's output, both dequantized. An int8 model's input is quantized as
    its input details say, ``q = clip(round(x / scale) + zero_point)``."""

    def __init__(self, model: bytes, *, batch: int = 100) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.interpreter = Interpreter(model_content=model, experimental_preserve_all_tensors=True,
                                       experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.batch = batch
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        ops = self.interpreter._get_ops_details()
        self.logits = self.output
        if ops and ops[-1]["op_name"] == "SOFTMAX" and ops[-1]["outputs"][0] == self.output["index"]:
            index = int(ops[-1]["inputs"][0])
            self.logits = next(t for t in self.interpreter.get_tensor_details() if t["index"] == index)
        self.interpreter.resize_tensor_input(self.input["index"], [batch, *self.input["shape"][1:]])
        self.interpreter.allocate_tensors()

    @property
    def quantized(self) -> bool:
        return self.input["dtype"] != np.float32

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        if not self.quantized:
            return x.astype(np.float32)
        scale, zero = self.input["quantization"]
        info = np.iinfo(self.input["dtype"])
        return np.clip(np.round(x.astype(np.float64) / scale) + zero, info.min, info.max).astype(self.input["dtype"])

    def run(self, x) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x)
        logits, outputs = [], []
        for start in range(0, len(x), self.batch):
            part = x[start:start + self.batch]
            if part.ndim == 4:
                part = part.transpose(0, 2, 3, 1)  # NCHW -> NHWC
            n = len(part)
            if n < self.batch:
                part = np.concatenate([part, np.zeros((self.batch - n,) + part.shape[1:], part.dtype)])
            self.interpreter.set_tensor(self.input["index"], self.quantize_input(part))
            self.interpreter.invoke()
            logits.append(self._dequantized(self.logits)[:n].reshape(n, -1))
            outputs.append(self._dequantized(self.output)[:n].reshape(n, -1))
        return np.concatenate(logits), np.concatenate(outputs)

    def _dequantized(self, detail: dict) -> np.ndarray:
        values = self.interpreter.get_tensor(detail["index"])
        if values.dtype == np.float32:
            return values.astype(np.float64)
        scale, zero = detail["quantization"]
        return (values.astype(np.float64) - zero) * scale
