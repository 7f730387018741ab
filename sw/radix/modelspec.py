"""Resolve a MODEL argument to a torch module (host only).

MODEL is a built-in name (``lenet5``, ``digitsnet``), ``path/to/file.py:factory``, a function
returning the module, or a model file written by ``radix compress`` (architecture and weights in
one file, :mod:`radix.compress.model_file`; read with ``torch.load(weights_only=True)`` and a
whitelist of layer types, so loading it runs no code from the file). Weights come from
``--weights`` (a state_dict) or else from the built-in's committed file or the model file itself.
The resolved model records where it came from, for the program's provenance.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

MODEL_FILE_SUFFIXES = (".pt", ".pth")


class ModelSpecError(InputError):
    """The MODEL or --weights argument cannot be resolved; the message says which and why."""


@dataclass
class ResolvedModel:
    module: object  # torch.nn.Module
    spec: str
    weights: str | None
    weights_sha256: str | None
    input_shape: tuple[int, int, int] | None
    dataset: str | None
    warnings: list[str] = field(default_factory=list)

    def provenance(self) -> dict:
        return {"model": self.spec, "weights": self.weights, "weights_sha256": self.weights_sha256}


def sha256_of(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def resolve(spec: str, weights: str | None = None) -> ResolvedModel:
    """Build the module named by ``spec`` and load its weights."""
    import torch

    from radix_models import BUILTIN_MODELS

    warnings: list[str] = []
    model_sha256 = None  # a model file without --weights: its own hash stands for the weights'
    if spec in BUILTIN_MODELS:
        entry = BUILTIN_MODELS[spec]
        module = entry.factory()
        weights_path = Path(weights) if weights else entry.weights
        input_shape, dataset = tuple(entry.input_shape), entry.dataset
    elif ":" in spec and spec.rsplit(":", 1)[0].endswith(".py"):
        path_text, factory_name = spec.rsplit(":", 1)
        spec = f"{Path(path_text).resolve()}:{factory_name}"  # stored absolute: the program outlives the cwd
        module = _from_file(spec)
        weights_path = Path(weights) if weights else None
        input_shape, dataset = None, None
        if weights_path is None:
            warnings.append(f"model {spec}: no --weights given, so its weights are the factory's own "
                            "(random unless the factory loads trained ones)")
    elif spec.endswith(".onnx"):
        from .onnx_import import load_onnx

        spec = str(Path(spec).resolve())
        module, input_shape = load_onnx(spec)
        weights_path, dataset = None, None
        model_sha256 = sha256_of(spec)  # the weights live in the ONNX file
        if weights:
            raise ModelSpecError(f"model {spec}: an ONNX model holds its weights; --weights does not apply")
    elif Path(spec).is_file() or Path(spec).suffix in MODEL_FILE_SUFFIXES:
        loaded = _from_model_file(spec)
        spec = str(Path(spec).resolve())
        module, weights_path = loaded.module, Path(weights) if weights else None
        input_shape, dataset = loaded.input_shape, loaded.dataset
        model_sha256 = None if weights_path else sha256_of(spec)
    else:
        raise ModelSpecError(
            f"model {spec!r}: not a built-in ({', '.join(BUILTIN_MODELS)}), path/to/file.py:factory nor a model file "
            "written by radix compress"
        )
    if weights_path is not None:
        try:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
            module.load_state_dict(state)
        except FileNotFoundError:
            raise ModelSpecError(f"weights {weights_path}: no such file") from None
        except Exception as exc:  # torch raises many types for a bad checkpoint
            raise ModelSpecError(f"weights {weights_path}: cannot be loaded into {spec} ({exc})") from None
    module.eval()
    return ResolvedModel(
        module=module,
        spec=spec,
        weights=str(weights_path.resolve()) if weights_path else None,
        weights_sha256=sha256_of(weights_path) if weights_path else model_sha256,
        input_shape=input_shape,
        dataset=dataset,
        warnings=warnings,
    )


def _from_model_file(spec: str):
    from .compress.model_file import ModelFileError, load

    try:
        return load(spec)
    except ModelFileError as exc:  # the message starts with the file's path
        raise ModelSpecError(f"model {exc}") from None


def _from_file(spec: str):
    import torch

    path_text, factory_name = spec.rsplit(":", 1)
    path = Path(path_text)
    if not path.is_file():
        raise ModelSpecError(f"model {spec!r}: no such file {path}")
    module_spec = importlib.util.spec_from_file_location(f"radix_user_model_{path.stem}", path)
    user_module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(user_module)
    except Exception as exc:  # the user's file may raise anything
        raise ModelSpecError(f"model {spec!r}: importing {path} failed ({exc!r})") from None
    factory = getattr(user_module, factory_name, None)
    if not callable(factory):
        raise ModelSpecError(f"model {spec!r}: {path} has no function {factory_name!r}")
    try:
        module = factory()
    except TypeError as exc:
        raise ModelSpecError(f"model {spec!r}: calling {factory_name}() failed ({exc}); the factory must take no "
                             "arguments") from None
    except Exception as exc:  # the user's factory may raise anything
        raise ModelSpecError(f"model {spec!r}: {factory_name}() raised {type(exc).__name__}: {exc}") from None
    if not isinstance(module, torch.nn.Module):
        raise ModelSpecError(f"model {spec!r}: {factory_name}() returned {type(module).__name__}, not a torch.nn.Module")
    return module
