"""The low-level training API objects (``LearningRateScheduler``, ``DataReader32/64``,
``EmbeddingTrainingCache``, the 2.3 ``ModelPrefetcher``) and the interface the training runtime provides.

The frontend checks arguments and then calls a runtime object through :class:`TrainingRuntime`; the objects
here wrap the runtime's scheduler, readers and cache the same way. Under ``hgc compile``
(``config.compile_only``) :class:`CompileOnlyRuntime` stands in, so scripts run to their end without reading
data or training.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from hgc.frontend._args import as_str, bad


# -- what the runtime provides ---------------------------------------------------------------------
class SchedulerBackend(Protocol):
    def get_next(self) -> float: ...


class ReaderBackend(Protocol):
    def set_source(self, file_name: str) -> None: ...

    def is_eof(self) -> bool: ...


class CacheBackend(Protocol):
    def update(self, keyset_files: list[str]) -> None: ...

    def dump(self) -> None: ...

    def get_incremental_model(self) -> list[tuple[np.ndarray, np.ndarray]]: ...


class TrainingRuntime(Protocol):
    """What ``Model`` and ``Session`` call after checking arguments. Arguments arrive normalised: embedding
    files as {embedding name: path}, sources as lists, enums by name."""

    def fit(self, num_epochs: int, max_iter: int, display: int, eval_interval: int, snapshot: int,
            snapshot_prefix: str, data_source_params: Any) -> None: ...

    def train(self) -> bool: ...

    def eval(self) -> bool: ...

    def get_eval_metrics(self) -> list[tuple[str, float]]: ...

    def evaluation(self, predictions_file: str, labels_file: str) -> list[tuple[str, float]]: ...

    def get_current_loss(self) -> float: ...

    def start_data_reading(self) -> None: ...

    def set_learning_rate(self, lr: float) -> None: ...

    def load_dense_weights(self, path: str, data_source_params: Any) -> None: ...

    def load_dense_optimizer_states(self, path: str, data_source_params: Any) -> None: ...

    def load_sparse_weights(self, files: dict[str, str], data_source_params: Any) -> None: ...

    def load_sparse_optimizer_states(self, files: dict[str, str], data_source_params: Any) -> None: ...

    def freeze_dense(self) -> None: ...

    def unfreeze_dense(self) -> None: ...

    def freeze_embedding(self, names: list[str]) -> None: ...

    def unfreeze_embedding(self, names: list[str]) -> None: ...

    def reset_learning_rate_scheduler(self, base_lr: float, warmup_steps: int, decay_start: int,
                                      decay_steps: int, decay_power: float, end_lr: float) -> None: ...

    def set_source(self, source: list[str], keyset: list[str], eval_source: str) -> None: ...

    def learning_rate_scheduler(self) -> SchedulerBackend: ...

    def data_reader(self, which: str) -> ReaderBackend: ...  # which: "train" | "eval"

    def embedding_training_cache(self) -> CacheBackend: ...

    def get_incremental_model(self) -> list[tuple[np.ndarray, np.ndarray]]: ...

    def save_params_to_files(self, prefix: str, iteration: int) -> None: ...

    def export_predictions(self, predictions_file: str, labels_file: str) -> None: ...

    def check_out_tensor(self, name: str, which: str) -> np.ndarray: ...  # which: "Train" | "Evaluate"

    def get_params_num(self) -> int: ...

    def check_overflow(self) -> None: ...

    def copy_weights_for_evaluation(self) -> None: ...


# -- the compile-only stand-in ------------------------------------------------------------------------
class _FixedScheduler:
    def __init__(self, lr: float) -> None:
        self.lr = lr

    def get_next(self) -> float:
        return self.lr


class _NoData:
    """A reader under compile-only: sources are accepted and it is always at its end."""

    compile_only = True

    def set_source(self, file_name: str) -> None:
        return None

    def is_eof(self) -> bool:
        return True


class _NoCache:
    compile_only = True

    def update(self, keyset_files: list[str]) -> None:
        return None

    def dump(self) -> None:
        return None

    def get_incremental_model(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return []


class CompileOnlyRuntime:
    """Stands in for the runtime under ``hgc compile``: every call returns at once. train()/eval() report
    that no batch was read (False), losses and learning rates are the configured constants, readers are at
    their end, and no file is read or written."""

    compile_only = True

    def __init__(self, lr: float = 0.0) -> None:
        self.lr = lr

    def fit(self, *args: Any) -> None:
        return None

    def train(self) -> bool:
        return False

    def eval(self) -> bool:
        return False

    def get_eval_metrics(self) -> list[tuple[str, float]]:
        return []

    def evaluation(self, predictions_file: str, labels_file: str) -> list[tuple[str, float]]:
        return []

    def get_current_loss(self) -> float:
        return 0.0

    def learning_rate_scheduler(self) -> SchedulerBackend:
        return _FixedScheduler(self.lr)

    def data_reader(self, which: str) -> ReaderBackend:
        return _NoData()

    def embedding_training_cache(self) -> CacheBackend:
        return _NoCache()

    def get_incremental_model(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return []

    def check_out_tensor(self, name: str, which: str) -> np.ndarray:
        return np.zeros((0,), np.float32)

    def get_params_num(self) -> int:
        return 0

    def __getattr__(self, name: str) -> Any:
        # every other TrainingRuntime method (loads, freezes, set_source, save, …) does nothing
        if name in TrainingRuntime.__dict__ and callable(TrainingRuntime.__dict__[name]):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


def check_files_exist(where: str, arg: str, paths: Sequence[str], skip: bool = False,
                      data_source_params: Any = None) -> None:
    """Each path must exist locally, unless ``skip`` (compile-only: no file is read) or
    ``data_source_params`` puts the files on HDFS."""
    if skip or getattr(data_source_params, "use_hdfs", False):
        return
    for p in paths:
        if not os.path.exists(p):
            raise bad(where, arg, p, "no such file or directory")


def _compile_only(backend: Any) -> bool:
    return bool(getattr(backend, "compile_only", False))


# -- the low-level API objects --------------------------------------------------------------------
class LearningRateScheduler:
    """The model's learning-rate schedule (warmup, then constant, then polynomial decay)."""

    def __init__(self, backend: SchedulerBackend) -> None:
        self._backend = backend

    def get_next(self) -> float:
        """The learning rate of the next training iteration (advances the schedule by one step)."""
        return float(self._backend.get_next())


class DataReader:
    """The training or evaluation data reader of a model (epoch-mode control)."""

    key_type = ""

    def __init__(self, backend: ReaderBackend) -> None:
        self._backend = backend

    def set_source(self, file_name: str = "") -> None:
        """Read ``file_name`` next (a file list for Norm/Parquet, a data file for Raw); '' starts the current
        source again from its beginning."""
        w = f"{type(self).__name__}.set_source()"
        as_str(w, "file_name", file_name)
        if file_name:
            check_files_exist(w, "file_name", [file_name], _compile_only(self._backend))
        self._backend.set_source(file_name)

    def set_file_list_source(self, file_list: str = "") -> None:
        """The 2.x name of :meth:`set_source`."""
        w = f"{type(self).__name__}.set_file_list_source()"
        as_str(w, "file_list", file_list)
        if file_list:
            check_files_exist(w, "file_list", [file_list], _compile_only(self._backend))
        self._backend.set_source(file_list)

    def is_eof(self) -> bool:
        """Whether the reader has reached the end of its current source."""
        return bool(self._backend.is_eof())


class DataReader32(DataReader):
    """A data reader of 32-bit keys (``i64_input_key=False``)."""

    key_type = "uint32"


class DataReader64(DataReader):
    """A data reader of 64-bit keys (``i64_input_key=True``)."""

    key_type = "int64"


def keyset_list(where: str, keyset: Any, backend: Any, arg: str = "keyset_file") -> list[str]:
    """A keyset file or list of keyset files, as a checked list."""
    files = [keyset] if isinstance(keyset, str) else keyset
    if not isinstance(files, (list, tuple)) or not files or not all(isinstance(f, str) and f for f in files):
        raise bad(where, arg, keyset, "must be a keyset file name or a non-empty list of them")
    check_files_exist(where, arg, files, _compile_only(backend))
    return list(files)


class EmbeddingTrainingCache:
    """The embedding training cache of a model: loads the embedding rows a dataset's keys need."""

    def __init__(self, backend: CacheBackend) -> None:
        self._backend = backend

    def update(self, keyset_file: str | list[str]) -> None:
        """Start a pass: write the trained rows back to the parameter servers, then bring in the rows of the
        keys in ``keyset_file`` (one file for all tables, or a list with one file per table)."""
        self._backend.update(keyset_list(f"{type(self).__name__}.update()", keyset_file, self._backend))

    def dump(self) -> None:
        """Write every table to its sparse model folder (``CreateETC``'s ``sparse_models``)."""
        self._backend.dump()

    def get_incremental_model(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per table, (keys int64, vectors float32 (N, vec)) of the rows updated since the last call."""
        return list(self._backend.get_incremental_model())


#: The 3.x API text's spelling.
EmbeddingTraingCache = EmbeddingTrainingCache


class ModelPrefetcher(EmbeddingTrainingCache):
    """The 2.3 name of the embedding cache that swaps table parts in per dataset (model oversubscribing)."""


ModelOversubscriber = ModelPrefetcher
