from __future__ import annotations

from collections.abc import Iterator

import pytest

from hgc.config import config

from tests.runtime.tiny import Data, make_data


@pytest.fixture(scope="session")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    """The tiny learnable Norm dataset the training-runtime tests share (read-only)."""
    return make_data(str(tmp_path_factory.mktemp("tiny_data")))


@pytest.fixture(autouse=True)
def _cpu_target() -> Iterator[None]:
    """These are cpu-target tests, also on a machine with a GPU (tests that need the cuda path patch it in)."""
    with config.patch(target="cpu"):
        yield
