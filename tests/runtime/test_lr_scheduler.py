from __future__ import annotations

import numpy as np
import pytest

from hgc.runtime.lr_scheduler import LearningRateScheduler


def test_warmup_constant_decay_and_end_values() -> None:
    s = LearningRateScheduler(0.5, warmup_steps=4, decay_start=10, decay_steps=5, decay_power=2, end_lr=0.01)
    got = [s.get_next() for _ in range(17)]
    want = [0.125, 0.25, 0.375, 0.5,            # warmup: s·base/warmup, up to and including step 4
            0.5, 0.5, 0.5, 0.5, 0.5, 0.5,       # steps 5..10 (decay starts after decay_start)
            0.5 * 0.8 ** 2, 0.5 * 0.6 ** 2, 0.5 * 0.4 ** 2, 0.5 * 0.2 ** 2,
            0.01,                               # step 15: base·0 clipped to end_lr
            0.01, 0.01]                         # after the decay: end_lr
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert s.step == 17 and s.current == got[-1]


def test_decay_power_and_end_lr_floor_inside_the_decay() -> None:
    s = LearningRateScheduler(2.0, warmup_steps=1, decay_start=3, decay_steps=7, decay_power=3.5, end_lr=0.4)
    got = [s.get_next() for _ in range(11)]
    want = [2.0, 2.0, 2.0] + [max(2.0 * ((10 - k) / 7) ** 3.5, 0.4) for k in range(4, 11)] + [0.4]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[6] == 0.4 and got[4] > 0.4  # the floor takes over part-way through the decay


def test_defaults_give_a_constant_rate_and_reset_starts_over() -> None:
    s = LearningRateScheduler(0.001)
    assert [s.get_next() for _ in range(3)] == [0.001, 0.001, 0.001]
    s.reset(0.3, warmup_steps=3)
    assert s.step == 0
    np.testing.assert_allclose([s.get_next() for _ in range(4)], [0.1, 0.2, 0.3, 0.3])


@pytest.mark.parametrize("kw,match", [
    ({"decay_power": 0.5}, "decay_power=0.5"), ({"warmup_steps": 0}, "warmup_steps=0"),
    ({"decay_steps": 0}, "decay_steps=0"), ({"decay_start": -1}, "decay_start=-1"),
    ({"end_lr": -0.1}, "end_lr=-0.1"), ({"base_lr": -1.0}, "base_lr=-1.0")])
def test_bad_values_are_named(kw: dict, match: str) -> None:
    args = {"base_lr": 0.1, **kw}
    with pytest.raises(ValueError, match=match):
        LearningRateScheduler(**args)
