"""HugeCTR-style log lines (``[HCTR][HH:MM:SS.mmm][INFO][RK0][main]: …``) and the fit progress bar."""
from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

RANK = int(os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMI_RANK", "0")))

_bar: Any = None  # the open progress bar; log lines are written above it


def info(message: str) -> None:
    t = time.time()
    stamp = time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"
    line = f"[HCTR][{stamp}][INFO][RK{RANK}][main]: {message}"
    if _bar is not None:
        _bar.write(line, file=sys.stdout)
    else:
        print(line, flush=True)


def wants_progress_bar(stream: TextIO, rank: int = RANK) -> bool:
    """Whether fit() draws a progress bar: on rank 0, when ``stream`` is a terminal and tqdm is installed."""
    if rank != 0 or not stream.isatty():
        return False
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def progress(total: int | None, enabled: bool | None = None) -> Iterator[Callable[[int], None]]:
    """The fit progress bar: yields ``advance(n)``. A tqdm bar on stderr while ``enabled`` (default: when
    :func:`wants_progress_bar` says so); log lines go above it meanwhile."""
    global _bar
    if not (wants_progress_bar(sys.stderr) if enabled is None else enabled):
        yield lambda n: None
        return
    from tqdm import tqdm

    _bar = bar = tqdm(total=total, unit="it", leave=False, file=sys.stderr)
    try:
        yield bar.update
    finally:
        _bar = None
        bar.close()
