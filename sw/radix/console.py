"""Terminal output shared by the CLI commands: aligned tables and progress bars.

Progress bars use tqdm (on stderr, so ``--json`` output on stdout stays one clean object); on the
board, where tqdm may be absent, work proceeds without a bar.
"""

from __future__ import annotations

import sys


def table(headers: list[str], rows: list[list]) -> str:
    """A plain aligned text table."""
    cells = [[str(h) for h in headers]] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def progress(iterable, *, desc: str, total: int | None = None, enabled: bool = True):
    """Wrap ``iterable`` in a progress bar when tqdm is installed and stderr is a terminal."""
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, desc=desc, total=total, file=sys.stderr, leave=False, disable=None)
