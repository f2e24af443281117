"""Which target runs a model: ``config.target`` when it names one, else cuda if CuPy sees a GPU, else cpu.

The runtime checks a forced cuda target when it starts (:func:`hgc.runtime.target.resolve_target`).
"""
from __future__ import annotations

from hgc.config import config

TARGETS = ("cpu", "cuda")


def gpu_visible() -> bool:
    """True when CuPy imports and reports at least one CUDA device."""
    from hgc.runtime.target import cuda_available

    return cuda_available()


def active_target() -> str:
    """"cpu" or "cuda" (``HGC_TARGET`` / ``config.target``: auto | cpu | cuda)."""
    t = config.target
    if t in TARGETS:
        return t
    if t != "auto":
        raise ValueError(f"config.target (HGC_TARGET) = {t!r} is not allowed: must be 'auto', 'cpu' or 'cuda'")
    return "cuda" if gpu_visible() else "cpu"
