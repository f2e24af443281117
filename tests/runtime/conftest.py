from __future__ import annotations

import pytest

from tests.runtime.tiny import Data, make_data


@pytest.fixture(scope="session")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    """The tiny learnable Norm dataset the training-runtime tests share (read-only)."""
    return make_data(str(tmp_path_factory.mktemp("tiny_data")))
