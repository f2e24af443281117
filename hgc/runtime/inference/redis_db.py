"""The ``redis_cluster`` volatile database: tables kept in a Redis deployment (a cluster, or a single server).

``address`` lists one or more ``host[:port]`` entries separated by ``;`` or ``,`` (port 6379 when left
out). The first server that answers is asked whether cluster mode is on; a cluster is then used through
redis-py's cluster client with every listed node as a start-up node. ``user_name`` / ``password`` log in
(no login with an empty password).

Layout of table ``T`` over ``num_partitions`` partitions: partition ``i`` is the hash ``T/p<i>`` (field: the
key's 8 little-endian bytes, value: the vector's float32 little-endian bytes) with the sorted set
``T/p<i>/t`` of each key's last time and, under ``evict_least_used``, ``T/p<i>/n`` of its read counts. Time
is the counter ``T/clock`` (one tick per request, shared by every process using the table). Requests go in
pipelined chunks of ``max_get_batch_size`` / ``max_set_batch_size`` keys; only single-key commands are
used, so every partition may live on another cluster node.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np

from hgc.errors import DataError
from hgc.runtime.inference.database import Database, chunks, key_bytes, partition_of
from hgc.runtime.inference.row_store import as_keys

DEFAULT_PORT = 6379
WHERE = "VolatileDatabaseParams"


def parse_address(address: str) -> list[tuple[str, int]]:
    """``host[:port]`` entries separated by ``;`` or ``,`` → [(host, port)]."""
    out = []
    for part in (p.strip() for p in re.split(r"[;,]", address)):
        if not part:
            continue
        host, sep, port = part.rpartition(":") if ":" in part else (part, "", "")
        if not sep:
            host, port = part, str(DEFAULT_PORT)
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{WHERE}: argument 'address' = {address!r} is not allowed: entry {part!r} must be "
                             f"host[:port] with a port in 1..65535")
        out.append((host, int(port)))
    if not out:
        raise ValueError(f"{WHERE}: argument 'address' = {address!r} is not allowed: must name at least one "
                         f"host[:port]")
    return out


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def connect(address: str, user_name: str, password: str, timeout_s: float = 5.0) -> Any:
    """A redis-py client for the deployment at ``address`` (cluster client when cluster mode is on)."""
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.cluster import ClusterNode, RedisCluster
        from redis.retry import Retry
    except ImportError as e:
        raise ImportError(f"the redis_cluster volatile database needs the 'redis' package ({e}); install it "
                          f"with pip install 'hgc[hps]'") from None
    nodes = parse_address(address)
    login = {"username": user_name or None, "password": password} if password else {}
    errors = []
    for host, port in nodes:
        client = redis.Redis(host=host, port=port, socket_connect_timeout=timeout_s, socket_timeout=timeout_s,
                             retry=Retry(NoBackoff(), 1), **login)
        try:
            client.ping()
            cluster = int(client.info("cluster").get("cluster_enabled", 0)) == 1
        except redis.exceptions.AuthenticationError as e:
            client.close()
            if not password:
                raise ValueError(f"{WHERE}: argument 'password' = '' is not allowed: the Redis server at "
                                 f"{host}:{port} needs a login ({e})") from None
            raise ValueError(f"{WHERE}: argument 'user_name'/'password' = {user_name!r}/{'*' * len(password)} "
                             f"is not allowed: the Redis server at {host}:{port} refused the login ({e})") from None
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as e:
            errors.append(f"{host}:{port}: {type(e).__name__}: {e}")
            client.close()
            continue
        if not cluster:
            return client
        client.close()
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in nodes], socket_connect_timeout=timeout_s,
                            socket_timeout=timeout_s, **login)
    raise ValueError(f"{WHERE}: argument 'address' = {address!r} is not allowed: no Redis server answers there "
                     f"({'; '.join(errors)})")


class RedisDatabase(Database):
    """Tables in a Redis deployment; see the module docstring for the layout."""

    kind = "redis_cluster"

    def __init__(self, address: str = "127.0.0.1:7000", user_name: str = "default", password: str = "",
                 num_partitions: int = 1, overflow_margin: int = 2 ** 64 - 1,
                 overflow_policy: str = "evict_oldest", overflow_resolution_target: float = 0.8,
                 refresh_time_after_fetch: bool = False, max_get_batch_size: int = 10000,
                 max_set_batch_size: int = 10000, client: Any = None) -> None:
        super().__init__()
        self.address = address
        self.client = client if client is not None else connect(address, user_name, password)
        self.partitions = max(1, int(num_partitions))
        self.overflow_margin = int(overflow_margin)
        self.overflow_policy = overflow_policy
        self.target = float(overflow_resolution_target)
        self.refresh = bool(refresh_time_after_fetch)
        self.get_batch, self.set_batch = int(max_get_batch_size), int(max_set_batch_size)
        self.evicted = 0

    # -- names ------------------------------------------------------------------------------------
    @staticmethod
    def hash_key(table: str, part: int) -> str:
        return f"{table}/p{part}"

    def _tick(self, table: str) -> int:
        return int(self.client.incr(f"{table}/clock"))

    # -- operations -------------------------------------------------------------------------------
    def clear(self, table: str) -> None:
        names = list(self.client.scan_iter(match=_glob_escape(table) + "/*", count=1000))
        for ch in chunks(len(names), 500):
            for name in names[ch]:
                self.client.delete(name)

    def _decode(self, table: str, part: int, values: list[Any]) -> np.ndarray:
        width = 4 * self.vec[table]
        for v in values:
            if len(v) != width:
                raise DataError(f"redis://{self.address}/{self.hash_key(table, part)}",
                                f"holds a vector of {len(v)} bytes; the embedding's vectors of "
                                f"{self.vec[table]} float32 values take {width} bytes")
        return np.frombuffer(b"".join(values), "<f4").reshape(len(values), self.vec[table])

    def fetch(self, table: str, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keys = as_keys(keys)
        found = np.zeros(keys.shape[0], bool)
        out = np.empty((keys.shape[0], self.vec[table]), np.float32)
        part = partition_of(keys, self.partitions)
        stamp = self._tick(table) if self.refresh else None
        for p in range(self.partitions):
            idx = np.flatnonzero(part == p)
            h = self.hash_key(table, p)
            for ch in chunks(idx.shape[0], self.get_batch):
                sub = idx[ch]
                fields = key_bytes(keys[sub])
                values = self.client.hmget(h, fields)
                hit = np.array([v is not None for v in values], bool)
                if not hit.any():
                    continue
                out[sub[hit]] = self._decode(table, p, [v for v in values if v is not None])
                found[sub[hit]] = True
                got = [f for f, ok in zip(fields, hit) if ok]
                pipe = self.client.pipeline(transaction=False)
                if stamp is not None:
                    pipe.zadd(f"{h}/t", {f: stamp for f in got}, xx=True)
                if self.overflow_policy == "evict_least_used":
                    for f in got:
                        pipe.zincrby(f"{h}/n", 1, f)
                pipe.execute()
        return found, out[found]

    def insert(self, table: str, keys: np.ndarray, vectors: np.ndarray) -> None:
        keys = as_keys(keys)
        vectors = np.ascontiguousarray(np.asarray(vectors, np.float32).reshape(keys.shape[0], self.vec[table]),
                                       "<f4")
        part = partition_of(keys, self.partitions)
        stamp = self._tick(table)
        for p in range(self.partitions):
            idx = np.flatnonzero(part == p)
            h = self.hash_key(table, p)
            for ch in chunks(idx.shape[0], self.set_batch):
                sub = idx[ch]
                fields = key_bytes(keys[sub])
                rows = vectors[sub]
                pipe = self.client.pipeline(transaction=False)
                pipe.hset(h, mapping={f: rows[j].tobytes() for j, f in enumerate(fields)})
                pipe.zadd(f"{h}/t", {f: stamp for f in fields})
                if self.overflow_policy == "evict_least_used":
                    pipe.zadd(f"{h}/n", {f: 0 for f in fields}, nx=True)
                pipe.execute()
                self._resolve_overflow(h)

    def _resolve_overflow(self, h: str) -> None:
        n = int(self.client.hlen(h))
        if n <= self.overflow_margin:
            return
        count = n - int(self.overflow_margin * self.target)
        if self.overflow_policy == "evict_random":
            victims = list(self.client.hrandfield(h, count) or [])
        else:
            order = f"{h}/n" if self.overflow_policy == "evict_least_used" else f"{h}/t"
            victims = list(self.client.zrange(order, 0, count - 1))
        for ch in chunks(len(victims), self.set_batch):
            part = victims[ch]
            pipe = self.client.pipeline(transaction=False)
            pipe.hdel(h, *part)
            pipe.zrem(f"{h}/t", *part)
            if self.overflow_policy == "evict_least_used":
                pipe.zrem(f"{h}/n", *part)
            pipe.execute()
        self.evicted += len(victims)

    def size(self, table: str) -> int:
        return sum(int(self.client.hlen(self.hash_key(table, p))) for p in range(self.partitions))

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close is not None:
            close()

    def describe(self) -> str:
        return f"redis_cluster at {self.address} ({self.partitions} partition{'s' if self.partitions > 1 else ''})"
