"""The training runtime behind ``Model``: a :class:`Trainer` plus checkpoints, readers and the low-level
API, in the shape of ``hgc.frontend.low_level.TrainingRuntime`` (arguments arrive already checked)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hgc.ir.graph import Graph
from hgc.passes.context import PipelineResult
from hgc.runtime.etc import EmbeddingTrainingCache, EtcConfig
from hgc.runtime.run_config import RunConfig
from hgc.runtime.trainer import Checkpoints, Trainer


class ReaderHandle:
    """What ``get_data_reader_train/eval()`` hand out: the trainer's reader, opened on first use (by
    ``set_source`` on its new source, so none needs to be configured)."""

    def __init__(self, trainer: Trainer, which: str) -> None:
        self.trainer, self.which = trainer, which

    def set_source(self, file_name: str = "") -> None:
        self.trainer.set_source(self.which, file_name)

    def is_eof(self) -> bool:
        return bool(self.trainer.reader(self.which).is_eof())


class TrainingSession:
    def __init__(self, graph: Graph, compiled: PipelineResult, cfg: RunConfig,
                 loss_weights: dict[str, float] | None = None) -> None:
        self.trainer = Trainer(graph, compiled, cfg, loss_weights)
        self.checkpoints = Checkpoints(self.trainer)
        self.etc: EmbeddingTrainingCache | None = None
        self.etc_passes: list[tuple[str, str]] = []  # fit()'s (file list, keyset file) pairs

    # -- the embedding training cache --------------------------------------------------------------
    def attach_etc(self, config: EtcConfig, keysets: Sequence[str] = ()) -> EmbeddingTrainingCache:
        """Train through the embedding training cache ``config``; fit() then reads the configured sources
        pass by pass with their ``keysets`` (one keyset file per source)."""
        if self.etc is not None:
            raise ValueError("the embedding training cache is already attached to this model")
        sources = list(self.trainer.cfg.reader.source)
        if keysets and len(keysets) != len(sources):
            raise ValueError(f"keyset has {len(keysets)} files for {len(sources)} sources; give one keyset file "
                             f"per source")
        self.etc = EmbeddingTrainingCache(self.trainer, config)
        self.etc_passes = list(zip(sources, keysets))
        return self.etc

    def _fit_etc(self, num_epochs: int, max_iter: int, display: int, eval_interval: int, snapshot: int) -> None:
        """fit() with the cache: every epoch trains the (source, keyset) passes in order, each one after
        ``update(keyset)``; no snapshots are taken (HugeCTR's rule); the tables are written back at the end."""
        etc = self.etc
        assert etc is not None
        if self.trainer.cfg.repeat_dataset:
            raise ValueError("fit() with the embedding training cache trains pass by pass in epoch mode: "
                             "CreateSolver(repeat_dataset=False) and fit(num_epochs=...)")
        if not self.etc_passes:
            raise ValueError("fit() with the embedding training cache needs one keyset file per source: "
                             "DataReaderParams(source=[...], keyset=[...]) or set_source(source, keyset, eval_source)")
        passes = [(src, (lambda ks=ks: etc.update([ks]))) for src, ks in self.etc_passes]
        self.trainer.fit(num_epochs, max_iter, display, eval_interval, snapshot, "", lambda prefix, it: None, passes)
        etc.write_back()

    # -- high level ----------------------------------------------------------------------------
    def fit(self, num_epochs: int, max_iter: int, display: int, eval_interval: int, snapshot: int,
            snapshot_prefix: str, data_source_params: Any) -> None:
        if self.etc is not None:
            self._fit_etc(num_epochs, max_iter, display, eval_interval, snapshot)
            return
        self.trainer.fit(num_epochs, max_iter, display, eval_interval, snapshot, snapshot_prefix,
                         self.checkpoints.save)

    def save_params_to_files(self, prefix: str, iteration: int) -> None:
        """The snapshot files; with the embedding training cache the dense files, and each table in its
        sparse model folder (with optimizer states), or under its snapshot name when it has none."""
        etc = self.etc
        if etc is None:
            self.checkpoints.save(prefix, iteration)
            return
        self.checkpoints.save(prefix, iteration, lambda names: etc.save(names.sparse))

    # -- low level -----------------------------------------------------------------------------
    def start_data_reading(self) -> None:
        self.trainer.reader("train").start()
        if self.trainer.has_eval_source():
            self.trainer.reader("eval").start()

    def train(self) -> bool:
        return self.trainer.train_once()

    def eval(self) -> bool:
        return self.trainer.eval_once()

    def get_eval_metrics(self) -> list[tuple[str, float]]:
        return self.trainer.eval_metrics()

    def evaluation(self, predictions_file: str, labels_file: str) -> list[tuple[str, float]]:
        """The 2.3 Session's evaluation: the whole evaluation source in epoch mode, max_eval_batches batches
        in non-epoch mode; with file names, every batch's predictions and labels are appended to them."""
        t = self.trainer
        export = (lambda: self.export_predictions(predictions_file, labels_file)) if predictions_file else None
        return t.evaluate(t.cfg.max_eval_batches if t.cfg.repeat_dataset else None, export)

    def get_current_loss(self) -> float:
        return self.trainer.current_loss

    def set_learning_rate(self, lr: float) -> None:
        self.trainer.set_learning_rate(lr)

    def learning_rate_scheduler(self) -> Any:
        return self.trainer.scheduler

    def reset_learning_rate_scheduler(self, base_lr: float, warmup_steps: int, decay_start: int,
                                      decay_steps: int, decay_power: float, end_lr: float) -> None:
        self.trainer.scheduler.reset(base_lr, warmup_steps, decay_start, decay_steps, decay_power, end_lr)

    def data_reader(self, which: str) -> ReaderHandle:
        return ReaderHandle(self.trainer, which)

    def set_source(self, source: list[str], keyset: list[str], eval_source: str) -> None:
        """The data of the next epochs; with keysets (the embedding training cache) the (source, keyset)
        passes of the next fit()."""
        if keyset:
            if self.etc is None:
                raise ValueError("set_source(source, keyset, eval_source) needs the embedding training cache "
                                 "(Model(..., etc=CreateETC(...)))")
            if len(keyset) != len(source):
                raise ValueError(f"keyset has {len(keyset)} files for {len(source)} sources; give one keyset file "
                                 f"per source")
            self.etc_passes = list(zip(source, keyset))
        self.trainer.set_source("train", source[0])
        self.trainer.set_source("eval", eval_source)

    def export_predictions(self, predictions_file: str, labels_file: str) -> None:
        preds, labels = self.trainer.last_eval_batch()
        for path, arr in ((predictions_file, preds), (labels_file, labels)):
            with open(path, "a") as f:
                f.write(" ".join(f"{v:.6g}" for v in np.asarray(arr, np.float64).reshape(-1)) + "\n")

    def check_out_tensor(self, name: str, which: str) -> np.ndarray:
        return self.trainer.check_out_tensor(name, which)

    # -- files ---------------------------------------------------------------------------------
    def load_dense_weights(self, path: str, data_source_params: Any) -> None:
        self.checkpoints.load_dense_weights(path)

    def load_dense_optimizer_states(self, path: str, data_source_params: Any) -> None:
        self.checkpoints.load_dense_optimizer_states(path)

    def load_sparse_weights(self, files: dict[str, str], data_source_params: Any) -> None:
        for name, path in files.items():
            self.checkpoints.load_sparse_weights(name, path)

    def load_sparse_optimizer_states(self, files: dict[str, str], data_source_params: Any) -> None:
        for name, path in files.items():
            self.checkpoints.load_sparse_optimizer_states(name, path)

    # -- freezing ------------------------------------------------------------------------------
    def freeze_dense(self) -> None:
        self.trainer.frozen_dense = True

    def unfreeze_dense(self) -> None:
        self.trainer.frozen_dense = False

    def freeze_embedding(self, names: list[str]) -> None:
        self.trainer.frozen_embeddings.update(names)

    def unfreeze_embedding(self, names: list[str]) -> None:
        self.trainer.frozen_embeddings.difference_update(names)

    def embedding_training_cache(self) -> EmbeddingTrainingCache:
        """The cache (``update``, ``dump``, ``get_incremental_model``). A model without one (the 2.3 Session's
        model prefetcher) gets a Staged parameter server per table, without sparse model folders."""
        if self.etc is None:
            self.attach_etc(EtcConfig.staged(len(self.trainer.tables)))
        assert self.etc is not None
        return self.etc

    def get_incremental_model(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return self.embedding_training_cache().get_incremental_model()

    def get_params_num(self) -> int:
        return int(sum(int(np.prod(s)) for s in self.trainer.dense_shapes)
                   + sum(t.size * t.vec_size for t in self.trainer.tables.values()))

    def check_overflow(self) -> None:
        self.trainer.check_overflow()

    def copy_weights_for_evaluation(self) -> None:
        return None  # one network serves training and evaluation: nothing to copy
