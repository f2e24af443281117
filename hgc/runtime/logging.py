"""HugeCTR-style log lines (``[HCTR][HH:MM:SS.mmm][INFO][RK0][main]: …``) and the fit progress bar."""
from __future__ import annotations

import os
import sys
import time
from typing import Any

RANK = int(os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMI_RANK", "0")))


def info(message: str) -> None:
    t = time.time()
    stamp = time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"
    print(f"[HCTR][{stamp}][INFO][RK{RANK}][main]: {message}", flush=True)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def progress(total: int | None) -> Any:
    """A tqdm bar on a terminal (when tqdm is installed), otherwise nothing."""
    if not sys.stderr.isatty() or RANK != 0:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, unit="it", leave=False, file=sys.stderr)
