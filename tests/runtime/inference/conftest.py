from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.runtime.inference.deploy import Deployed, RedisServer, deploy_wdl, redis_server


@pytest.fixture(scope="session")
def tiny_wdl(tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    """tiny.wdl trained on the cpu target and saved, with the trainer's evaluation predictions (read-only)."""
    return deploy_wdl(str(tmp_path_factory.mktemp("tiny_wdl")))


@pytest.fixture(scope="session")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server for the session's tests."""
    yield from redis_server(str(tmp_path_factory.mktemp("redis")))
