"""Resolve a MODEL argument to a torch module (host only).

MODEL is a built-in name (``lenet5``, ``digitsnet``), ``path/to/file.py:factory``, a function
returning the module, or a model file written by ``radix compress`` (architecture and weights in
one file, :mod:`radix.compress.model_file`; read with ``torch.load(weights_only=True)`` and a
whitelist of layer types, so loading it runs no code from the file). Weights come from
``--weights`` (a state_dict) or else from the built-in's committed file or the model file itself.
The resolved model records where it came from, for the program's provenance.

A ``file.py`` imports as a script run from its own directory would: its siblings
(``from mynet import MyNet``) import, and when its directory is a package (it holds an
``__init__.py``) the file imports as part of that package, so relative imports (``from .blocks
import Block``) work too; see :func:`_user_code_path` for what happens to ``sys.path``. Whatever
the user's code raises or exits with while it is imported or its factory runs is a
:class:`ModelSpecError` naming the file and the factory.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

MODEL_FILE_SUFFIXES = (".pt", ".pth")
_LISTED = 3  # names shown of a list of missing or unexpected state_dict keys


class ModelSpecError(InputError):
    """The MODEL or --weights argument cannot be resolved; the message says which and why."""


@dataclass
class ResolvedModel:
    """A model ready for ingestion (eval mode, weights loaded) and where it came from."""

    module: object  # torch.nn.Module
    spec: str
    weights: str | None
    weights_sha256: str | None
    input_shape: tuple[int, int, int] | None
    dataset: str | None
    warnings: list[str] = field(default_factory=list)

    def provenance(self) -> dict:
        """What the program records of the model: its spec, the weights' file and hash."""
        return {"model": self.spec, "weights": self.weights, "weights_sha256": self.weights_sha256}


def sha256_of(path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def resolve(spec: str, weights: str | None = None) -> ResolvedModel:
    """Build the module named by ``spec`` and load its weights; :class:`ModelSpecError` names the
    argument at fault."""
    from radix_models import BUILTIN_MODELS

    warnings: list[str] = []
    model_sha256 = None  # a model file without --weights: its own hash stands for the weights'
    if spec in BUILTIN_MODELS:
        entry = BUILTIN_MODELS[spec]
        module = entry.factory()
        weights_path = Path(weights) if weights else entry.weights
        input_shape, dataset = tuple(entry.input_shape), entry.dataset
    elif spec.endswith(".py") or spec.endswith(".py:"):
        path = Path(spec.removesuffix(":"))
        if not path.is_file():
            raise ModelSpecError(f"model {spec}: no such file {path}")
        raise ModelSpecError(f"model {spec}: give path/to/file.py:factory, the function that returns the model"
                             f"{_defined_in(path)}")
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
        _load_weights(module, weights_path, spec)
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


def _load_weights(module, path: Path, spec: str) -> None:
    """Load the state_dict at ``path`` into ``module``; a file that is not one, or whose keys or
    shapes are not the module's, is refused in one line naming the file and the first keys."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelSpecError(f"weights {path}: no such file") from None
    except Exception as exc:  # torch raises many types for a file it cannot read
        if "Weights only load failed" in str(exc):  # torch's refusal to unpickle objects other than tensors
            reason = ("it holds Python objects besides tensors (a whole model saved with torch.save(model)?), and "
                      "radix loads tensors only, so that no code from the file runs")
        else:
            reason = f"not a file torch.save wrote ({type(exc).__name__}: {_first_line(exc)})"
        raise ModelSpecError(f"weights {path}: {reason}; save the weights with "
                             "torch.save(model.state_dict(), path)") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        nested = [key for key, value in state.items() if isinstance(value, Mapping)] if isinstance(
            state, Mapping) else []
        hint = f" (a checkpoint? it holds dicts under {_some(nested)}: save model.state_dict() alone)" if nested else ""
        raise ModelSpecError(f"weights {path}: not a state_dict (a dict of tensors){hint}")
    expected = module.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    shapes = [f"{key} {tuple(state[key].shape)} in the file, {tuple(expected[key].shape)} in the model"
              for key in expected if key in state and state[key].shape != expected[key].shape]
    problems = [f"{len(keys)} {what if len(keys) == 1 else plural}: {_some(keys)}" for what, plural, keys in (
        ("missing key", "missing keys", missing), ("unexpected key", "unexpected keys", unexpected),
        ("shape mismatch", "shape mismatches", shapes)) if keys]
    if problems:
        # nn.DataParallel and DistributedDataParallel save every key with a "module." prefix
        prefixed = unexpected and all(key.startswith("module.") for key in unexpected) and (
            {key.removeprefix("module.") for key in unexpected} >= set(missing))
        hint = " (saved from nn.DataParallel? strip the 'module.' prefix of its keys)" if prefixed else ""
        raise ModelSpecError(f"weights {path} do not fit {spec}: {'; '.join(problems)}{hint}")
    try:
        module.load_state_dict(state)
    except Exception as exc:  # a module's own loading hooks may raise anything
        raise ModelSpecError(f"weights {path}: cannot be loaded into {spec} ({_first_line(exc)})") from None


def _some(names: list[str]) -> str:
    """The first few of ``names``, and how many more."""
    shown = ", ".join(names[:_LISTED])
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _defined_in(path: Path) -> str:
    """``; it defines: a, b`` naming the public functions and classes of the file that could be
    factories (read with ``ast``, so no code runs), or "" when there are none or it does not parse."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return ""
    names = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            names.append(node.name)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            arguments = node.args
            # a factory is called without arguments: every positional one needs a default
            if len(arguments.posonlyargs) + len(arguments.args) <= len(arguments.defaults) and all(
                    default is not None for default in arguments.kw_defaults):
                names.append(node.name)
    return f"; {path.name} defines: {', '.join(names)}" if names else ""


def _exit_text(code) -> str:
    return "sys.exit()" if code is None else f"sys.exit({code!r})"


def _from_file(spec: str):
    import torch

    path_text, factory_name = spec.rsplit(":", 1)
    path = Path(path_text)
    if not path.is_file():
        raise ModelSpecError(f"model {spec!r}: no such file {path}")
    with _user_code_path(path):
        try:
            user_module = _import_file(path)
        except SystemExit as exc:  # e.g. a training script's argparse at import time, parsing radix's arguments
            raise ModelSpecError(f"model {spec!r}: importing {path} called {_exit_text(exc.code)}; code that runs "
                                 "as a script belongs under `if __name__ == \"__main__\":`") from None
        except Exception as exc:  # the user's file may raise anything
            raise ModelSpecError(f"model {spec!r}: importing {path} failed: {type(exc).__name__}: "
                                 f"{_first_line(exc)}") from None
        factory = getattr(user_module, factory_name, None)
        if not callable(factory):
            raise ModelSpecError(f"model {spec!r}: {path} has no function {factory_name!r}{_defined_in(path)}")
        try:
            module = factory()
        except SystemExit as exc:
            raise ModelSpecError(f"model {spec!r}: {factory_name}() called {_exit_text(exc.code)} while loading the "
                                 "model") from None
        except TypeError as exc:
            raise ModelSpecError(f"model {spec!r}: calling {factory_name}() failed ({exc}); the factory must take no "
                                 "arguments") from None
        except Exception as exc:  # the user's factory may raise anything
            raise ModelSpecError(f"model {spec!r}: {factory_name}() raised {type(exc).__name__}: "
                                 f"{_first_line(exc)}") from None
    if not isinstance(module, torch.nn.Module):
        raise ModelSpecError(f"model {spec!r}: {factory_name}() returned {type(module).__name__}, "
                             "not a torch.nn.Module")
    return module


def _package_of(path: Path) -> tuple[Path, str]:
    """``(root, package)``: the directory above the file's enclosing packages (directories with an
    ``__init__.py``) and the dotted package the file is in, ``""`` for none."""
    root = path.parent
    while (root / "__init__.py").is_file() and root.name.isidentifier() and root.parent != root:
        root = root.parent
    return root, ".".join(path.parent.relative_to(root).parts)


@contextlib.contextmanager
def _user_code_path(path: Path):
    """Put the model file's directory (and, for a file inside a package, the directory above the
    package) first on ``sys.path`` while the file is imported and its factory runs, as Python
    does for a script, so that its siblings import.

    Afterwards these directories move to the end of ``sys.path`` rather than leave it: code the
    model imports lazily (in ``forward``) still finds its siblings, while the installed packages
    radix imports later can no longer be shadowed by a user's file of the same name (a
    ``sklearn.py`` or ``onnx.py`` next to the model). Entries the user's code added itself stay.
    """
    root, package = _package_of(path)
    directories = list(dict.fromkeys([str(path.parent)] + ([str(root)] if package else [])))
    sys.path[:0] = directories
    try:
        yield
    finally:
        for directory in directories:
            if directory in sys.path:
                sys.path.remove(directory)  # the first occurrence: the one put in front above
        sys.path.extend(directory for directory in directories if directory not in sys.path)


def _import_file(path: Path):
    """Run the file as a module: part of its package if it is in one, else under a private name
    (a ``model.py`` must not replace another module called ``model``)."""
    _, package = _package_of(path)
    if package and path.stem.isidentifier():
        module = importlib.import_module(f"{package}.{path.stem}")
        if Path(module.__file__).resolve() != path.resolve():
            raise ImportError(f"the package {package.split('.')[0]!r} is imported from elsewhere already "
                              f"({module.__file__}): rename the package")
        return module
    name = f"radix_user_model_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # as import does: dataclasses and pickle look a class's module up there
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
