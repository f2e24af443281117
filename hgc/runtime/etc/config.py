"""Settings of the embedding training cache, as plain runtime data (the runtime never imports the frontend).

``EtcConfig.from_params`` reads what ``CreateETC`` returns by attribute name: ``ps_types`` (enums or their
names, "Staged" / "Cached"), ``sparse_models``, ``local_paths`` and ``hcache_configs`` /
``hmem_cache_configs``. A Cached-PS configuration is either an object with ``num_blocks`` (or HugeCTR's
C++ name ``num_cached_pass``), ``target_hit_rate`` and ``max_num_evict`` (what ``CreateHMemCache`` makes),
or the path of a JSON file holding an object with those three keys.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

STAGED, CACHED = "Staged", "Cached"
PS_KINDS = (STAGED, CACHED)


@dataclass(frozen=True)
class CacheSettings:
    """One Cached-PS: up to ``num_blocks`` passes are kept in host memory; while the hit rate of a pass's
    query stays below ``target_hit_rate`` the oldest block is evicted for the new pass, at most
    ``max_num_evict`` times (then the cache is frozen)."""

    num_blocks: int
    target_hit_rate: float
    max_num_evict: int

    def __post_init__(self) -> None:
        if isinstance(self.num_blocks, bool) or not isinstance(self.num_blocks, int) or self.num_blocks < 1:
            raise ValueError(f"hmem cache config: num_blocks={self.num_blocks!r} must be an integer >= 1")
        rate = self.target_hit_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= float(rate) <= 1.0:
            raise ValueError(f"hmem cache config: target_hit_rate={rate!r} must be a number in [0, 1]")
        evict = self.max_num_evict
        if isinstance(evict, bool) or not isinstance(evict, int) or evict < 0:
            raise ValueError(f"hmem cache config: max_num_evict={evict!r} must be an integer >= 0")

    @classmethod
    def from_entry(cls, entry: Any) -> CacheSettings:
        """From a ``CreateHMemCache`` object (or anything with the three attributes) or a JSON file path."""
        if isinstance(entry, CacheSettings):
            return entry
        if isinstance(entry, str):
            return cls._from_file(entry)
        blocks = getattr(entry, "num_blocks", getattr(entry, "num_cached_pass", None))
        rate, evict = getattr(entry, "target_hit_rate", None), getattr(entry, "max_num_evict", None)
        if blocks is None or rate is None or evict is None:
            raise ValueError(f"hmem cache config {entry!r} must be a CreateHMemCache(num_blocks, target_hit_rate, "
                             f"max_num_evict) object or the path of a JSON file with those keys")
        return cls(blocks, float(rate), evict)

    @classmethod
    def _from_file(cls, path: str) -> CacheSettings:
        if not os.path.isfile(path):
            raise ValueError(f"hmem cache config '{path}': no such file (give a JSON file with num_blocks, "
                             f"target_hit_rate and max_num_evict, or a CreateHMemCache object)")
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"hmem cache config '{path}': not valid JSON ({e})") from None
        if not isinstance(doc, dict) or not {"num_blocks", "target_hit_rate", "max_num_evict"} <= set(doc):
            raise ValueError(f"hmem cache config '{path}': needs an object with the keys num_blocks, "
                             f"target_hit_rate and max_num_evict")
        return cls(doc["num_blocks"], doc["target_hit_rate"], doc["max_num_evict"])


@dataclass(frozen=True)
class EtcConfig:
    """Per embedding table (in the order the tables were added) a PS kind and a sparse model folder ('' =
    none: the table starts empty and is saved under the snapshot names); per MPI rank a local folder for
    the Cached-PS files; one cache setting for every Cached-PS or one each."""

    ps_types: tuple[str, ...]
    sparse_models: tuple[str, ...]
    local_paths: tuple[str, ...] = ()
    cache_settings: tuple[CacheSettings, ...] = ()

    def __post_init__(self) -> None:
        for t in self.ps_types:
            if t not in PS_KINDS:
                raise ValueError(f"ps_types entry {t!r} must be one of {list(PS_KINDS)}")
        if len(self.sparse_models) != len(self.ps_types):
            raise ValueError(f"sparse_models has {len(self.sparse_models)} entries, ps_types {len(self.ps_types)}; "
                             f"give one of each per embedding table")
        cached = self.ps_types.count(CACHED)
        if cached:
            if not self.local_paths:
                raise ValueError("local_paths is required when ps_types holds Cached (a folder on the node's "
                                 "local SSD for the Cached-PS files)")
            if len(self.cache_settings) not in (1, cached):
                raise ValueError(f"hcache_configs has {len(self.cache_settings)} entries; give one for all "
                                 f"{cached} Cached tables or one each")

    @classmethod
    def from_params(cls, params: Any) -> EtcConfig:
        """From ``CreateETC``'s result (read by attribute name, see the module docstring)."""
        types = tuple(getattr(t, "name", t) for t in params.ps_types)
        entries = getattr(params, "hmem_cache_configs", None) or getattr(params, "hcache_configs", None) or ()
        return cls(types, tuple(params.sparse_models), tuple(getattr(params, "local_paths", ()) or ()),
                   tuple(CacheSettings.from_entry(e) for e in entries))

    @classmethod
    def staged(cls, n_tables: int, sparse_models: Sequence[str] = ()) -> EtcConfig:
        """Staged-PS for every table (the 2.3 model prefetcher's default), optionally with sparse models."""
        models = tuple(sparse_models) or ("",) * n_tables
        return cls((STAGED,) * n_tables, models)

    def cache_for(self, table_index: int) -> CacheSettings:
        """The cache setting of the Cached table ``table_index`` (its rank among the Cached tables)."""
        rank = self.ps_types[:table_index].count(CACHED)
        return self.cache_settings[0 if len(self.cache_settings) == 1 else rank]

    def local_path(self, rank: int = 0) -> str:
        return self.local_paths[min(rank, len(self.local_paths) - 1)]
