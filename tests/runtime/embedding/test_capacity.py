from __future__ import annotations

import pytest

from hgc.runtime.embedding.capacity import rows_for_workspace, state_copies


@pytest.mark.parametrize("opt,update,s", [
    ("Adam", "Global", 2), ("Adam", "LazyGlobal", 3), ("Adam", "Local", 2), ("AdaGrad", "Global", 1),
    ("Adagrad", "Local", 1), ("MomentumSGD", "Global", 1), ("Nesterov", "Local", 1), ("SGD", "Global", 0),
    ("SGD", "LazyGlobal", 0)])
def test_rows_follow_the_workspace_formula(opt: str, update: str, s: int) -> None:
    assert state_copies(opt, update) == s
    for mb, vec in [(75, 16), (1, 1), (13, 7), (0, 11), (4096, 128)]:
        assert rows_for_workspace(mb, vec, opt, update) == (mb * 1024 * 1024) // ((1 + s) * 4 * vec)


def test_fractional_workspace_is_floored() -> None:
    assert rows_for_workspace(0.5, 3, "SGD") == (1 << 19) // 12


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="optimizer_type='Lion'"):
        rows_for_workspace(8, 16, "Lion")
    with pytest.raises(ValueError, match="embedding_vec_size=0"):
        rows_for_workspace(8, 0, "Adam")
    with pytest.raises(ValueError, match="workspace_size_per_gpu_in_mb=-1"):
        rows_for_workspace(-1, 16, "Adam")
