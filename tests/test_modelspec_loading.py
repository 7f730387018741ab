"""A user's model file as the command line loads it, from a directory other than the model's:
sibling modules and packages import, bad weights, a missing factory and a factory that exits or
raises end in one line naming the file (README "Exit codes": 2, an input error)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from radix.cli import main
from radix.modelspec import ModelSpecError, resolve

MYNET = textwrap.dedent("""
    import torch
    from torch import nn

    class MyNet(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv1 = nn.Conv2d(1, 4, 3)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(4, 10)

        def forward(self, x):
            import lazyhelper  # imported only when the model runs
            return self.fc(lazyhelper.flat(self.pool(torch.relu(self.conv1(x)))))
""")

MYMODEL = textwrap.dedent("""
    import sys
    from mynet import MyNet

    SYS_PATH_IN_FACTORY = []

    def make():
        SYS_PATH_IN_FACTORY.extend(sys.path)
        return MyNet()

    def exits():
        sys.exit(3)

    def interrupted():
        raise KeyboardInterrupt

    def _private():
        return MyNet()

    def needs(width):
        return MyNet()
""")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture()
def models(tmp_path):
    """The user's model directory: a model file, the module it imports and one it imports lazily."""
    directory = tmp_path / "models"
    write(directory / "mynet.py", MYNET)
    write(directory / "lazyhelper.py", "import torch\n\ndef flat(x):\n    return torch.flatten(x, 1)\n")
    write(directory / "mymodel.py", MYMODEL)
    return directory


@pytest.fixture()
def elsewhere(tmp_path, monkeypatch):
    """A working directory that is neither the repo nor the model's; the user's modules leave
    sys.modules and sys.path is restored afterwards (the command line is called in-process)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield work
    for name in set(sys.modules) - before:
        if str(tmp_path) in str(getattr(sys.modules[name], "__file__", None) or ""):
            del sys.modules[name]


def radix(cwd, *argv):
    """The CLI as a separate program in ``cwd``: ``(status, stdout, stderr)``."""
    done = subprocess.run([sys.executable, "-m", "radix.cli", *map(str, argv)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": ""})
    return done.returncode, done.stdout, done.stderr


def input_error(capsys, *argv) -> str:
    """The command fails with status 2 and one line ``radix: error: ...`` (and under --json one
    object of kind "input"); returns the message."""
    status = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("radix: error:")]
    assert status == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert main([str(a) for a in argv] + ["--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "input" and report["error"] == lines[0].removeprefix("radix: error: ")
    return report["error"]


# -- sibling modules and packages -------------------------------------------------------------

def test_model_file_imports_its_siblings_from_another_directory(tmp_path, models):
    work = tmp_path / "work"
    work.mkdir()
    # a user's file named like a package radix imports later must not replace it
    write(models / "mlxtend.py", "raise ImportError('the user mlxtend.py shadowed the installed mlxtend')\n")
    status, out, err = radix(work, "check", "../models/mymodel.py:make", "--data", "mnist5k")
    assert status == 0, err
    assert "mymodel.py:make: supported: 2 layers" in out


def test_the_model_directory_is_first_while_loading_and_last_afterwards(models, elsewhere):
    before = list(sys.path)
    resolve(f"{models / 'mymodel.py'}:make")
    user_module = sys.modules["radix_user_model_mymodel"]
    assert user_module.SYS_PATH_IN_FACTORY[0] == str(models)
    assert sys.path == before + [str(models)]  # lazy imports in forward still find the siblings
    resolve(f"{models / 'mymodel.py'}:make")
    assert sys.path == before + [str(models)]  # not added twice


def test_package_relative_and_plain_subdirectory_layouts(capsys, tmp_path, elsewhere):
    source = tmp_path / "src"
    package = source / "zoo_radix_layout"
    write(package / "__init__.py", "")
    write(package / "blocks.py", textwrap.dedent("""
        from torch import nn

        def block():
            return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    """))
    write(package / "nets" / "__init__.py", "")
    write(package / "nets" / "helper.py", "def wrap(module):\n    return module\n")
    write(package / "nets" / "small.py", textwrap.dedent("""
        from ..blocks import block
        from . import helper

        def make():
            return helper.wrap(block())
    """))
    write(source / "plain" / "layers_radix_layout.py", "from torch import nn\n\nclass Net(nn.Sequential):\n"
          "    def __init__(self):\n        super().__init__(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, 3))\n")
    write(source / "plain" / "model.py", "from layers_radix_layout import Net\n\ndef make():\n    return Net()\n")
    for spec in ("../src/zoo_radix_layout/nets/small.py:make", "../src/plain/model.py:make"):
        assert main(["check", spec, "--input-shape", "1,8,8"]) == 0, capsys.readouterr().err
        assert "supported: 2 layers" in capsys.readouterr().out


# -- --weights ---------------------------------------------------------------------------------

def _state(models: Path) -> dict:
    """The state_dict of the user's MyNet."""
    sys.path.insert(0, str(models))
    try:
        from mynet import MyNet
    finally:
        sys.path.pop(0)
    return MyNet().state_dict()


@pytest.mark.parametrize("case, expected", [
    ("missing", "1 missing key: fc.bias"),
    ("unexpected", "5 unexpected keys: extra0, extra1, extra2 and 2 more"),
    ("shape", "1 shape mismatch: fc.weight (3, 4) in the file, (10, 4) in the model"),
    ("dataparallel", "strip the 'module.' prefix"),
    ("checkpoint", "not a state_dict (a dict of tensors) (a checkpoint? it holds dicts under model"),
    ("whole_model", "it holds Python objects besides tensors (a whole model saved with torch.save(model)?)"),
])
def test_weights_that_do_not_fit_are_named_in_one_line(capsys, case, expected, models, elsewhere):
    state = _state(models)
    if case == "missing":
        del state["fc.bias"]
    elif case == "unexpected":
        state.update({f"extra{i}": torch.zeros(1) for i in range(5)})
    elif case == "shape":
        state["fc.weight"] = torch.zeros(3, 4)
    elif case == "dataparallel":
        state = {f"module.{key}": value for key, value in state.items()}
    elif case == "checkpoint":
        state = {"epoch": 3, "model": state}
    else:
        state = nn.Linear(2, 2)
    torch.save(state, elsewhere / f"{case}.pt")
    message = input_error(capsys, "check", "../models/mymodel.py:make", "--input-shape", "1,8,8",
                          "--weights", f"{case}.pt")
    assert message.startswith(f"weights {case}.pt") and expected in message
    assert "\n" not in message and "Error(s) in loading state_dict" not in message


# -- the factory -------------------------------------------------------------------------------

def test_a_model_file_without_factory_lists_its_factories(capsys, models, elsewhere):
    message = input_error(capsys, "check", "../models/mymodel.py", "--input-shape", "1,8,8")
    assert "give path/to/file.py:factory" in message
    # no-argument functions and classes; not _private nor needs(width); nothing ran to find them
    assert message.endswith("mymodel.py defines: make, exits, interrupted")
    assert "radix_user_model_mymodel" not in sys.modules
    message = input_error(capsys, "check", "../models/mymodel.py:maek", "--input-shape", "1,8,8")
    assert "has no function 'maek'; mymodel.py defines: make, exits, interrupted" in message
    assert "no such file" in input_error(capsys, "check", "../models/nosuch.py", "--input-shape", "1,8,8")


def test_a_factory_that_exits_is_an_input_error_naming_it(tmp_path, models):
    work = tmp_path / "work"
    work.mkdir()
    status, _, err = radix(work, "check", "../models/mymodel.py:exits", "--input-shape", "1,8,8")
    assert status == 2, err
    assert err.strip().endswith("mymodel.py:exits': exits() called sys.exit(3) while loading the model")


def test_a_model_file_that_exits_or_raises_on_import(capsys, models, elsewhere):
    # a training script's argparse at import time parses radix's own arguments and exits
    write(models / "script.py", "import argparse\nargparse.ArgumentParser().parse_args(['--nosuch'])\n"
                                "def make():\n    pass\n")
    message = input_error(capsys, "check", "../models/script.py:make", "--input-shape", "1,8,8")
    assert f"importing {models / 'script.py'} called sys.exit(2)" in message
    assert 'if __name__ == "__main__":' in message
    write(models / "broken.py", "x = 1 / 0\n")
    assert f"importing {models / 'broken.py'} failed: ZeroDivisionError: division by zero" in input_error(
        capsys, "check", "../models/broken.py:make", "--input-shape", "1,8,8")


def test_ctrl_c_in_a_factory_is_not_swallowed(models, elsewhere):
    with pytest.raises(KeyboardInterrupt):
        resolve(f"{models / 'mymodel.py'}:interrupted")
    with pytest.raises(ModelSpecError, match="exits\\(\\) called sys.exit\\(3\\)"):
        resolve(f"{models / 'mymodel.py'}:exits")
