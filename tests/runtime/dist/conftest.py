from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hgc.config import config
from tests.runtime.dist import worker


@pytest.fixture(autouse=True)
def cpu_target() -> Iterator[None]:
    """These runs test the cpu target's multi-GPU machinery, also on a machine with a GPU."""
    with config.patch(target="cpu"):
        yield


@pytest.fixture(scope="session")
def dist_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tiny Norm (hash tables) and Raw (one-hot) datasets of the multi-GPU runs (read-only)."""
    return worker.make_all(str(tmp_path_factory.mktemp("dist_data")))
