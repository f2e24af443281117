"""Canonical Optimizer_t / Update_t names and the optimizer hyper-parameters (CreateOptimizer's fields)."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

OPTIMIZERS = ("Adam", "AdaGrad", "MomentumSGD", "Nesterov", "SGD", "Ftrl")
UPDATE_TYPES = ("Global", "Local", "LazyGlobal")


def optimizer_name(name: str) -> str:
    """The canonical spelling of an Optimizer_t name (case-insensitive: 'Adagrad' → 'AdaGrad')."""
    for canon in OPTIMIZERS:
        if str(name).lower() == canon.lower():
            return canon
    raise ValueError(f"optimizer_type={name!r} is not supported; choose one of {list(OPTIMIZERS)}")


def update_name(name: str) -> str:
    """The canonical spelling of an Update_t name."""
    for canon in UPDATE_TYPES:
        if str(name).lower() == canon.lower():
            return canon
    raise ValueError(f"update_type={name!r} is not an Update_t; choose one of {list(UPDATE_TYPES)}")


@dataclass(frozen=True)
class OptHyper:
    """Hyper-parameters of CreateOptimizer with its defaults (facts §3.1); the learning rate is not one."""

    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-7
    initial_accu_value: float = 0.0
    momentum_factor: float = 0.0
    lambda1: float = 0.0
    lambda2: float = 0.0
    beta: float = 0.0

    @classmethod
    def from_kwargs(cls, where: str, **kw: Any) -> OptHyper:
        """Build from keyword arguments; an unknown keyword is a TypeError naming it."""
        known = {f.name for f in fields(cls)}
        for k in kw:
            if k not in known:
                raise TypeError(f"{where}: unknown optimizer argument '{k}'; known: {sorted(known)}")
        return cls(**{k: float(v) for k, v in kw.items()})
