"""The training runtime behind ``Model``: a :class:`Trainer` plus checkpoints, readers and the low-level
API, in the shape of ``hgc.frontend.low_level.TrainingRuntime`` (arguments arrive already checked)."""
from __future__ import annotations

from typing import Any

import numpy as np

from hgc.errors import NotBuiltError
from hgc.ir.graph import Graph
from hgc.passes.context import PipelineResult
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

    # -- high level ----------------------------------------------------------------------------
    def fit(self, num_epochs: int, max_iter: int, display: int, eval_interval: int, snapshot: int,
            snapshot_prefix: str, data_source_params: Any) -> None:
        self.trainer.fit(num_epochs, max_iter, display, eval_interval, snapshot, snapshot_prefix,
                         self.checkpoints.save)

    def save_params_to_files(self, prefix: str, iteration: int) -> None:
        self.checkpoints.save(prefix, iteration)

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
        if keyset:
            raise NotBuiltError("the embedding training cache (keyset sources)", "Model.set_source()")
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

    # -- capabilities other issues own ----------------------------------------------------------
    def embedding_training_cache(self) -> Any:
        raise NotBuiltError("the embedding training cache / model prefetcher (tables swapped through host memory "
                            "or SSD)")

    def get_incremental_model(self) -> list[tuple[np.ndarray, np.ndarray]]:
        raise NotBuiltError("the embedding training cache", "Model.get_incremental_model()")

    def get_params_num(self) -> int:
        return int(sum(int(np.prod(s)) for s in self.trainer.dense_shapes)
                   + sum(t.size * t.vec_size for t in self.trainer.tables.values()))

    def check_overflow(self) -> None:
        self.trainer.check_overflow()

    def copy_weights_for_evaluation(self) -> None:
        return None  # one network serves training and evaluation: nothing to copy
