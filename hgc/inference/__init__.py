"""``hugectr.inference``: offline inference with a trained model and the parameter-server settings."""
from __future__ import annotations

from hgc.frontend.enums import (
    DatabaseHashMapAlgorithm_t,
    DatabaseOverflowPolicy_t,
    DatabaseType_t,
    UpdateSourceType_t,
)
from hgc.frontend.inference import (
    InferenceModel,
    InferenceParams,
    PersistentDatabaseParams,
    UpdateSourceParams,
    VolatileDatabaseParams,
)

__all__ = [
    "DatabaseHashMapAlgorithm_t",
    "DatabaseOverflowPolicy_t",
    "DatabaseType_t",
    "InferenceModel",
    "InferenceParams",
    "PersistentDatabaseParams",
    "UpdateSourceParams",
    "UpdateSourceType_t",
    "VolatileDatabaseParams",
]
