"""The embedding training cache: host parameter servers (Staged / Cached) that feed the training tables
pass by pass (see ``cache.py``)."""
from __future__ import annotations

from hgc.runtime.etc.cache import EmbeddingTrainingCache
from hgc.runtime.etc.config import CacheSettings, EtcConfig

__all__ = ["CacheSettings", "EmbeddingTrainingCache", "EtcConfig"]
