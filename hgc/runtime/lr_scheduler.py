"""The learning-rate schedule of fit(): linear warmup, then constant, then polynomial decay (facts §3.4)."""
from __future__ import annotations

import math
import numbers


def _number(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r} must be a finite number")
    return float(value)


def _integer(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name}={value!r} must be an integer >= {low}")
    return int(value)


class LearningRateScheduler:
    """Yields the learning rate of each training step; the first get_next() is step 1.

    steps 1..warmup_steps ramp linearly up to base_lr; with decay_start > 0, steps after decay_start follow
    base·((decay_start + decay_steps − s)/decay_steps)^decay_power (never below end_lr) for decay_steps steps,
    and end_lr afterwards.
    """

    def __init__(self, base_lr: float, warmup_steps: int = 1, decay_start: int = 0, decay_steps: int = 1,
                 decay_power: float = 2.0, end_lr: float = 0.0) -> None:
        self.reset(base_lr, warmup_steps, decay_start, decay_steps, decay_power, end_lr)

    def reset(self, base_lr: float, warmup_steps: int = 1, decay_start: int = 0, decay_steps: int = 1,
              decay_power: float = 2.0, end_lr: float = 0.0) -> None:
        """New parameters; the step count starts again from 0 (Model.reset_learning_rate_scheduler)."""
        base_lr, end_lr = _number("base_lr", base_lr), _number("end_lr", end_lr)
        decay_power = _number("decay_power", decay_power)
        if base_lr < 0:
            raise ValueError(f"base_lr={base_lr!r} must be >= 0")
        if end_lr < 0:
            raise ValueError(f"end_lr={end_lr!r} must be >= 0")
        if decay_power < 1:
            raise ValueError(f"decay_power={decay_power!r} must be >= 1")
        self.base_lr, self.end_lr, self.decay_power = base_lr, end_lr, decay_power
        self.warmup_steps = _integer("warmup_steps", warmup_steps, 1)
        self.decay_start = _integer("decay_start", decay_start, 0)
        self.decay_steps = _integer("decay_steps", decay_steps, 1)
        self.step = 0
        self.current = 0.0

    def lr_at(self, s: int) -> float:
        """The learning rate of step s (1-based)."""
        if s <= self.warmup_steps:
            return self.base_lr * s / self.warmup_steps
        if self.decay_start == 0 or s <= self.decay_start:
            return self.base_lr
        if s <= self.decay_start + self.decay_steps:
            frac = (self.decay_start + self.decay_steps - s) / self.decay_steps
            return max(self.base_lr * frac ** self.decay_power, self.end_lr)
        return self.end_lr

    def get_next(self) -> float:
        """Advance one step and return its learning rate."""
        self.step += 1
        self.current = self.lr_at(self.step)
        return self.current
