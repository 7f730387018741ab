"""Bring-up records (boards/pynq_z2/bring-up/*.json) replay against this repository's engine.

A board session writes one with ``python3 -m radix.bringup`` (boards/pynq_z2/README.md §6);
``sample-reference.json`` was made the same way on the host's reference backend and says so.
Every record in the directory must replay clean, and the replay must catch a record that
contradicts the engine or itself.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from radix.bringup import FORMAT, SAMPLE_SOURCE, dumps, main, replay
from radix.engine_spec import BUS_ENGINE_VERSION, ERROR_CODE

RECORDS = Path(__file__).resolve().parents[1] / "boards" / "pynq_z2" / "bring-up"
SAMPLE = RECORDS / "sample-reference.json"


@pytest.mark.parametrize("path", sorted(RECORDS.glob("*.json")), ids=lambda path: path.name)
def test_record_replays_clean(path):
    assert replay(json.loads(path.read_text())) == []


def test_sample_is_labelled_a_sample_of_the_reference_backend():
    record = json.loads(SAMPLE.read_text())
    assert record["format"] == FORMAT and record["source"] == SAMPLE_SOURCE and record["source"].startswith("SAMPLE")
    assert record["backend"] == "reference" and record["run"]["cycles"]["source"] == "analytic model"
    assert record["versions"]["pynq"] is None and record["registers"]["VERSION"] == BUS_ENGINE_VERSION
    assert record["run"]["images"] == 1000 and record["run"]["batch"] == 10
    checks = record["checks"]
    assert checks["list"]["bit_exact"] and checks["opcode"]["err_code"] == ERROR_CODE["OPCODE"]
    assert checks["window"]["err_code"] == ERROR_CODE["WINDOW"]
    # what the README's checklist quotes as the expected LeNet-5 result
    assert record["run"]["accuracy"] == record["run"]["reference_accuracy"] == 0.977
    assert SAMPLE.read_text() == dumps(record)


def _broken(change) -> list[str]:
    record = copy.deepcopy(json.loads(SAMPLE.read_text()))
    change(record)
    return replay(record)


@pytest.mark.parametrize("change, problem", [
    (lambda r: r["registers"].update(VERSION=4), f"VERSION 4: this repository's bus-master engine is version "
                                                 f"{BUS_ENGINE_VERSION}"),
    (lambda r: r["registers"].update(ID=0), "ID reads 0x00000000"),
    (lambda r: r["registers"].update(ROWS=8), "register ROWS reads 8, the config says 16"),
    (lambda r: r.update(clock_mhz=130.0), "the recorded clock 130 MHz is not a frequency the PS can make"),
    (lambda r: r["checks"]["list"].update(status=1), "checks: the tiny list did not complete: STATUS=1"),
    (lambda r: r["checks"]["list"].update(bit_exact=False), "the tiny list's output differs from the golden model"),
    (lambda r: r["checks"]["list"].update(beats_read=1), "checks: the tiny list moved 1 beats in"),
    (lambda r: r["checks"]["opcode"].update(err_code=4), "checks: a bad opcode gave STATUS=4, ERR_CODE=4"),
    (lambda r: r["checks"]["window"].update(err_addr=0), "checks: a short window gave STATUS=4, ERR_CODE=1"),
    (lambda r: r["checks"]["reset"].update(status=1), "checks: STATUS=1 after CTRL.RESET, expected idle"),
    (lambda r: r["predictions"].__setitem__(5, (r["predictions"][5] + 1) % 10), "the predictions and labels give"),
    (lambda r: r["run"].update(bit_exact=False, mismatched_images=1), "run: 1 images differ from the reference"),
    (lambda r: r["run"].update(reference_accuracy=0.5), "differs from the reference's 0.5"),
    (lambda r: r["run"]["cycles"].update(source="measured"), "a reference record's from 'analytic model'"),
    (lambda r: r["run"]["cycles"].update(per_image_mean=1.0), "exceed the 1.0 from START to DONE"),
    (lambda r: r["run"]["estimate"].update(images_per_s=1.0), "estimate: 1.0 images/s is not 100.0 MHz"),
    (lambda r: r.update(format="radix-bring-up/1"), "this repository reads 'radix-bring-up/2'"),
])
def test_replay_catches_a_record_that_does_not_hold_up(change, problem):
    problems = _broken(change)
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize("option", ["--images", "--batch"])
def test_bringup_command_checks_its_arguments(capsys, option):
    argv = ["--backend", "reference", "--program", "p.radix", "--data", "d.npz", "-o", "x.json", option, "0"]
    assert main(argv) == 2
    assert f"{option} 0 must be at least 1" in capsys.readouterr().err
