"""docs/registers.md is generated from radix.engine_spec.BUS_REGISTERS and must stay in step; so is
the command table of docs/engine.md from COMMAND_FIELDS."""

from __future__ import annotations

from pathlib import Path

from radix.engine_spec import bus_markdown_table, command_markdown_table
from radix_hw.verilog import registers_markdown

DOC = Path(__file__).resolve().parent.parent / "docs" / "registers.md"
REGENERATE = (
    "regenerate with: python -c 'from radix_hw.verilog import registers_markdown; "
    "open(\"docs/registers.md\", \"w\").write(registers_markdown())'"
)


def _table(text: str) -> str:
    return "".join(line + "\n" for line in text.splitlines() if line.startswith("|"))


def test_table_matches_register_map():
    assert _table(DOC.read_text()) == bus_markdown_table(), f"docs/registers.md is stale; {REGENERATE}"


def test_whole_page_is_generated():
    assert DOC.read_text() == registers_markdown(), f"docs/registers.md was edited by hand; {REGENERATE}"


def test_command_table_matches_the_command_format():
    engine_doc = (DOC.parent / "engine.md").read_text()
    assert command_markdown_table() in engine_doc, "docs/engine.md's command table is stale: regenerate it from " \
        "radix.engine_spec.command_markdown_table()"
