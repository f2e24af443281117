"""The training loop shared by both targets: fit (epoch / non-epoch), evaluation, metrics, snapshots, the
low-level API (train / eval / get_eval_metrics …) and freezing. The target-specific part is the executor
(made in one place, :func:`hgc.runtime.target.make_executor`).

Targets. On cpu the trainer holds the dense weights, the optimizers and the embedding tables as host arrays and
applies the updates itself. On cuda the executor holds all of them on the GPU and updates them there; the
trainer keeps host mirrors of the dense weights and dense optimizer states (``dense_weights`` / ``dense_opt``
refresh them when read) and sees each device table through the cpu table's interface (``dump``, ``load``,
``slot_ids``) and its optimizer through :class:`~hgc.runtime.target.DeviceSparseOptimizer`. A cuda step reads
nothing back to the host: the total loss stays on the GPU, where a watch records the first iteration whose
loss is not finite. That record is checked, and the loss read, only when a display line, ``get_current_loss``,
an evaluation, a snapshot or the end of fit needs it; a NaN/Inf loss then raises the same TrainingError as on
cpu, naming the iteration it first appeared at (the steps after it have run). Evaluation keeps predictions
and labels on the GPU and computes AUC, HitRate and AverageLoss there.

Readers. The low-level ``train()`` / ``eval()`` read on where the last call stopped; in epoch mode they
return False at the end of the source and the reader stays there (``is_eof()``) until ``set_source``.
``fit()`` starts every epoch at the beginning of the training source, and an evaluation (fit's, or the 2.3
``Session.evaluation()``) that reaches the end of the evaluation source starts it over for the next one.

Freezing. A frozen part (``freeze_dense``, ``freeze_embedding``) is not updated at all: its weights, its
optimizer states and its Adam step count stay as they are.
"""
from __future__ import annotations

import os
import re
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hgc.config import config
from hgc.errors import TrainingError
from hgc.ir.graph import Graph
from hgc.ir.registry import get_op
from hgc.passes.context import PipelineResult
from hgc.runtime import logging as log
from hgc.runtime.cpu.executor import take_rows
from hgc.runtime.data.batch import Batch, SparseBatch
from hgc.runtime.dist.parallel import wrap_executor
from hgc.runtime.embedding.capacity import rows_for_workspace
from hgc.runtime.embedding.table import EmbeddingTable
from hgc.runtime.lr_scheduler import LearningRateScheduler
from hgc.runtime.metrics import compute_metrics
from hgc.runtime.optim.dense import make_dense_optimizer
from hgc.runtime.optim.sparse import make_sparse_optimizer
from hgc.runtime.regularizer import Regularizer
from hgc.runtime.run_config import RunConfig
from hgc.runtime.target import (
    DeviceSparseOptimizer,
    DeviceTable,
    by_node,
    make_executor,
    resolve_target,
    to_file_order,
)
from hgc.runtime.weights import init_dense_weights, weight_slices

ONE_HOT_TYPES = ("LocalizedSlotSparseEmbeddingOneHot", "HybridSparseEmbedding")
HYPER_KEYS = ("beta1", "beta2", "epsilon", "initial_accu_value", "momentum_factor", "lambda1", "lambda2", "beta")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def predictions(loss_op: str, pred: np.ndarray) -> np.ndarray:
    """What a loss layer leaves in its prediction tensor at evaluation: probabilities."""
    if loss_op == "CrossEntropyLoss":
        e = np.exp(pred - pred.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True))[:, 1:2]
    return _sigmoid(pred)


def _cupy() -> Any:
    from hgc.runtime.cuda.device import cupy

    return cupy()


def _close_readers(readers: dict[str, Any]) -> None:
    for reader in readers.values():
        reader.close()


class Trainer:
    """Owns weights, embedding tables, optimizers, scheduler, readers and metrics of one model."""

    def __init__(self, graph: Graph, compiled: PipelineResult, cfg: RunConfig,
                 loss_weights: dict[str, float] | None = None) -> None:
        self.cfg = cfg
        self.seed = cfg.seed or int.from_bytes(os.urandom(4), "little")
        log.info(f"Global seed is {self.seed}")
        self.graph = compiled.graph  # the optimized graph the executor runs; weights follow the user graph
        self._dense = init_dense_weights(graph, self.seed)  # file order; on cuda the host mirror
        self.weight_slices = weight_slices(graph, self.graph, self._dense)
        target = cfg.target if cfg.target == "cpu" else resolve_target(cfg.target)  # cuda: can it run here?
        host_tables: dict[str, EmbeddingTable] = {}
        table_opts: dict[str, dict[str, Any]] = {}
        self.sparse_opts: dict[str, Any] = {}
        for i, node in enumerate(n for n in self.graph.nodes() if get_op(n.op).kind == "embedding"):
            host_tables[node.name], table_opts[node.name] = self._host_table(node, i)
            # on cpu the optimizer is the table's; elsewhere this only checks the settings (no states)
            self.sparse_opts[node.name] = self._sparse_optimizer(node.name, table_opts[node.name],
                                                                 host_tables[node.name], target == "cpu")
        opt = dict(cfg.optimizer)
        self._dense_opt = make_dense_optimizer(opt["optimizer_type"], self._dense,
                                               **{k: opt[k] for k in HYPER_KEYS if k in opt})
        self.target, self.executor = make_executor(
            target, self.graph, compiled.plans, {n: self._dense[s] for n, s in self.weight_slices.items()},
            host_tables, self.seed, forced=config.target == "cuda", passes=[r.name for r in compiled.records])
        self.device = self.target == "cuda"
        self.tables: dict[str, Any]
        if self.device:
            from hgc.runtime.cuda.metrics import EvalAccumulator, LossWatch
            from hgc.runtime.target import device_name

            embeddings = self.executor.embeddings  # the host tables were copied to the GPU
            self.tables = {name: DeviceTable(e) for name, e in embeddings.items()}
            self.sparse_opts = {name: DeviceSparseOptimizer(e) for name, e in embeddings.items()}
            self._watch = LossWatch()
            self._dev_eval = EvalAccumulator()
            self.executor.use_cuda_graph = bool(cfg.use_cuda_graph)
            log.info(f"Target: cuda, {device_name()}")
        else:
            self.tables = host_tables
            if target != "cpu":  # cuda could not run the model: the optimizers need their states after all
                for name, table in host_tables.items():
                    self.sparse_opts[name] = self._sparse_optimizer(name, table_opts[name], table, True)
            log.info("Target: cpu")
        self.executor = wrap_executor(self, compiled)  # vvgpu with several GPUs: sharded tables, split batch
        self.scheduler = LearningRateScheduler(cfg.lr, cfg.warmup_steps, cfg.decay_start, cfg.decay_steps,
                                               cfg.decay_power, cfg.end_lr)
        self.lr = cfg.lr
        self.losses = [n for n in self.graph.nodes() if get_op(n.op).kind == "loss"]
        self.loss_weights = {n.name: 1.0 for n in self.losses}
        for label, w in (loss_weights or {}).items():
            hit = [n.name for n in self.losses if label in (n.name, n.inputs[1])]
            if not hit:
                raise ValueError(f"compile(): loss_names entry '{label}' names no loss layer or label; losses "
                                 f"read labels {[n.inputs[1] for n in self.losses]}")
            for name in hit:
                self.loss_weights[name] = float(w)
        reg = next((n for n in self.losses if n.attrs.get("use_regularizer")), None)
        self.regularizer = Regularizer(reg.attrs["regularizer_type"] if reg else None,
                                       float(reg.attrs["lambda"]) if reg else 0.0,
                                       max(1, cfg.batchsize // cfg.world_size))
        self.frozen_dense = False
        self.frozen_embeddings: set[str] = set()
        self._readers: dict[str, Any] = {}
        weakref.finalize(self, _close_readers, self._readers)  # reader threads end with the model
        self.iteration = 0  # training steps so far (restored from a snapshot name by Checkpoints)
        self._loss: Any = float("nan")  # the last training loss: a float, or on cuda a device scalar
        self._eval: dict[str, list[Any]] = self._empty_eval()
        self._last_eval: tuple[Any, Any] | None = None
        self._train_grads: dict[str, Any] = {}
        self._eval_tensors: Any = {}
        self._forwards = 0  # forward passes so far (cuda: tensors of a forward live until the next one)
        self._eval_forward = -1  # the forward count of the last evaluation step
        self._trained = False

    # -- construction --------------------------------------------------------------------------
    def _host_table(self, node: Any, index: int) -> tuple[EmbeddingTable, dict[str, Any]]:
        """The table of an embedding node with its initial rows, and the optimizer settings it uses."""
        a = node.attrs
        opt = dict(a["optimizer"]) if a.get("optimizer") else dict(self.cfg.optimizer)
        sizes = tuple(a.get("slot_size_array") or ())
        if node.op == "DistributedSlotSparseEmbeddingHash" or not sizes:
            capacity = rows_for_workspace(a["workspace_size_per_gpu_in_mb"], a["embedding_vec_size"],
                                          opt["optimizer_type"], opt["update_type"]) * self.cfg.world_size
            sizes = ()
            if capacity <= 0:
                raise ValueError(f"embedding '{node.name}': workspace_size_per_gpu_in_mb="
                                 f"{a['workspace_size_per_gpu_in_mb']} holds no rows; raise it or give "
                                 f"slot_size_array")
        table = EmbeddingTable(node.name, a["embedding_vec_size"], None if sizes else capacity, a["combiner"],
                               sizes, node.op in ONE_HOT_TYPES,
                               rng=np.random.default_rng([self.seed, 104729, index]))
        return table, opt

    @staticmethod
    def _sparse_optimizer(name: str, opt: dict[str, Any], table: EmbeddingTable, allocate: bool) -> Any:
        """The cpu SparseOptimizer of a table (``allocate``), or one without rows that only checks settings."""
        try:
            return make_sparse_optimizer(
                opt["optimizer_type"], table.capacity if allocate else 0, table.vec_size,
                update_type=opt["update_type"], atomic_update=bool(opt.get("atomic_update", True)),
                **{k: opt[k] for k in HYPER_KEYS if k in opt})
        except ValueError as e:
            raise ValueError(f"embedding '{name}': {e}") from None

    # -- state in file order (both targets) --------------------------------------------------------
    @property
    def dense_weights(self) -> list[np.ndarray]:
        """The dense weights in file order: on cpu the live arrays, on cuda host copies read from the GPU."""
        if self.device:
            to_file_order(self.executor.get_weights(), self.weight_slices, self._dense)
        return self._dense

    def set_dense_weights(self, weights: list[np.ndarray]) -> None:
        """Replace the dense weights (file order, shapes as ``dense_weights``)."""
        for w, v in zip(self._dense, weights):
            w[...] = v
        if self.device:
            self.executor.set_weights(by_node(self._dense, self.weight_slices))

    @property
    def dense_opt(self) -> Any:
        """The dense optimizer (its states in file order); on cuda a host mirror read from the GPU."""
        if self.device:
            for kind, states in zip(self._dense_opt.states(), self.executor.dense_states()):
                to_file_order(states, self.weight_slices, kind)
            self._dense_opt.step_count = int(self.executor.dense_steps)
        return self._dense_opt

    def load_dense_opt_states(self, states: list[list[np.ndarray]]) -> None:
        """Replace the dense optimizer states (one file-order list per state kind)."""
        self._dense_opt.load_states(states)
        if self.device:
            self.executor.set_dense_states([by_node(kind, self.weight_slices) for kind in self._dense_opt.states()])

    @property
    def dense_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of the dense weights in file order."""
        return [tuple(w.shape) for w in self._dense]

    @property
    def dense_state_kinds(self) -> tuple[str, ...]:
        return tuple(self._dense_opt.state_kinds)

    def table_rows(self, name: str) -> np.ndarray:
        """A host copy of every row of embedding ``name`` (capacity × vec)."""
        table = self.tables[name]
        return table.host_rows() if self.device else table.rows.copy()

    def bn_stats(self, node: str) -> dict[str, np.ndarray]:
        """The running statistics of a BatchNorm node ({} before its first training step on cpu)."""
        if self.device:
            return self.executor.state_of(node)
        return dict(self.executor.state[node])

    def set_bn_stats(self, node: str, mean: np.ndarray, var: np.ndarray) -> None:
        if self.device:
            self.executor.set_state(node, {"mean": mean, "var": var})
        else:
            self.executor.state[node].update(mean=mean, var=var)

    @property
    def current_loss(self) -> float:
        """The loss of the last training step (0.0 with gen_loss_summary off). On cuda reading it checks the
        NaN watch first and copies the loss to the host."""
        if self.device:
            self.check_finite()
            if not isinstance(self._loss, float):
                self._loss = float(self._loss.get()[0])
        return self._loss

    def check_finite(self) -> None:
        """On cuda: raise the TrainingError of the first training step whose loss was NaN/Inf, if any (the
        cpu target raises at the step itself)."""
        if not self.device:
            return
        for table in self.executor.embeddings.values():
            if hasattr(table, "check"):
                table.check()  # errors the tables recorded on the device (one-hot key out of range, table full)
        bad = self._watch.first_bad()
        if bad is not None:
            raise TrainingError(f"Train Runtime error: Loss cannot converge (loss = {bad[1]} at iteration "
                                f"{bad[0]})")

    # -- data ----------------------------------------------------------------------------------
    def reader(self, which: str) -> Any:
        """The "train" or "eval" DataReader, opened on its configured source on first use."""
        if which not in self._readers:
            self._readers[which] = self._open_reader(which, "")
        return self._readers[which]

    def set_source(self, which: str, file_name: str = "") -> None:
        """Read ``file_name`` next ("" = the current source again from its beginning)."""
        if which in self._readers or not file_name:
            self.reader(which).set_source(file_name)
        else:  # no source was configured, or the reader was never used: open it on the new one
            self._readers[which] = self._open_reader(which, file_name)

    def has_eval_source(self) -> bool:
        return "eval" in self._readers or bool(self.cfg.reader.eval_source)

    def _open_reader(self, which: str, source: str) -> Any:
        from hgc.runtime.data.reader import DataReader

        rc, cfg = self.cfg.reader, self.cfg
        eval_ = which == "eval"
        configured = rc.eval_source if eval_ else (rc.source[0] if rc.source else "")
        source = source or configured
        if not source:
            arg = "eval_source" if eval_ else "source"
            raise TrainingError(f"no {which} data source: DataReaderParams.{arg} is empty (set one, or call "
                                f"set_source)")
        inp = next(n for n in self.graph.nodes() if get_op(n.op).kind == "input").attrs
        sparse = [(s["slot_num"], list(s["nnz_per_slot"]), s["is_fixed_length"]) for s in inp["sparse"]]
        return DataReader(
            rc.format, source, cfg.batchsize_eval if eval_ else cfg.batchsize,
            label_dims=list(inp["label_dims"]), dense_dim=inp["dense_dim"], sparse=sparse,
            key_dtype=inp["key_dtype"], check_type=rc.check_type,
            num_samples=rc.eval_num_samples if eval_ else rc.num_samples,
            float_label_dense=rc.float_label_dense, slot_size_array=list(rc.slot_size_array),
            repeat=cfg.repeat_dataset, num_workers=max(1, min(rc.num_workers, os.cpu_count() or 1)),
            cache_eval_data=rc.cache_eval_data if eval_ else 0, pin=self._pin(eval_ and rc.cache_eval_data > 0))

    def _pin(self, cached: bool) -> Any:
        """The reader's batch hook: on cuda its workers move every batch into page-locked memory (the Stager
        then copies it without a fill on the training thread) — except cached evaluation data, which would
        hold page-locked memory for the whole run."""
        if not self.device or cached:
            return None
        from hgc.runtime.cuda.staging import pinned_batch

        return pinned_batch

    def _next_batch(self, which: str) -> Batch | None:
        """The next batch without its padding rows; training skips a short batch when drop_incomplete_batch.
        None at the end of an epoch-mode source."""
        reader = self.reader(which)
        while True:
            batch = reader.read()
            if batch is None:
                return None
            if batch.size < batch.n and which == "train" and self.cfg.drop_incomplete_batch:
                continue
            if batch.size:
                return take_rows(batch, batch.size)

    # -- one step ------------------------------------------------------------------------------
    def set_learning_rate(self, lr: float) -> None:
        """The learning rate of the next steps (fit() sets it from the scheduler every iteration)."""
        self.lr = float(lr)

    def _total_loss(self, losses: dict[str, float]) -> float:
        """Σ weight·loss over the loss layers, plus the regularizer term."""
        return sum(self.loss_weights[k] * v for k, v in losses.items()) + self.regularizer.term(self._dense)

    def step(self, batch: Batch) -> None:
        """Forward, backward and update on one (already trimmed) batch at ``self.lr``; the loss is then
        ``current_loss``. On cpu a NaN/Inf loss raises here, before any update; on cuda see ``check_finite``."""
        self.iteration += 1
        self._forwards += 1
        self._trained = True
        if self.device:
            self._device_step(batch)
            return
        out = self.executor.forward(batch, training=True)
        loss = self._total_loss(out.losses)
        if not np.isfinite(loss):
            raise TrainingError(f"Train Runtime error: Loss cannot converge (loss = {loss} at iteration "
                                f"{self.iteration})")
        wgrads, egrads = self.executor.backward(self.loss_weights)
        self._train_grads = self.executor.last_grads
        if not self.frozen_dense and self._dense:
            grads = self.regularizer.grads(self._dense)
            for name, gs in wgrads.items():
                for k, g in enumerate(gs, self.weight_slices[name].start):
                    grads[k] += np.asarray(g, grads[k].dtype).reshape(grads[k].shape)
            self._dense_opt.step(grads, self.lr)
        for name, table in self.tables.items():
            if name in self.frozen_embeddings:
                continue
            rows, g = egrads.get(name, (np.zeros(0, np.int64), np.zeros((0, table.vec_size), np.float32)))
            self.sparse_opts[name].update(table.rows, rows, g, self.lr)
        self._loss = float(loss) if self.cfg.gen_loss_summary else 0.0

    # -- the cuda step -------------------------------------------------------------------------
    @property
    def _scaler(self) -> float:
        """The loss scaler: gradients are scaled by it under mixed precision (and unscaled by the updates)."""
        return float(self.cfg.scaler) if self.cfg.use_mixed_precision else 1.0

    def _device_reg(self) -> tuple[str | None, float, Any] | None:
        r = self.regularizer
        return (r.kind, r.lam / r.batch_size, self.executor.master) if r.kind is not None else None

    def _device_total(self, losses: Any, reg: Any = None) -> Any:
        """Σ weight·loss (+ the regularizer term ``reg``, a float64 device scalar) of a step whose losses are
        ``losses`` (device copies, ``losses.device(node)``), as a float64 device scalar of shape (1,)."""
        from hgc.runtime.cuda.metrics import total_loss

        total = total_loss(_cupy(), [(losses.device(n.name), self.loss_weights[n.name]) for n in self.losses])
        return total if reg is None else total + reg

    def _reg_term(self) -> Any:
        """The regularizer term of the current weights as a float64 device scalar, or None."""
        from hgc.runtime.cuda.metrics import total_loss

        reg = self._device_reg()
        return None if reg is None else total_loss(_cupy(), [], reg)

    def _device_step(self, batch: Batch) -> None:
        """One cuda step without a host synchronisation. The executor's fused step (CUDA graphs when the
        solver asks for them) when nothing is frozen; else forward, backward and an update that skips the
        frozen parts."""
        ex = self.executor
        scaler = self._scaler
        reg = self._reg_term()  # of the weights before the update, as on cpu
        if (not self.frozen_dense and not self.frozen_embeddings
                and (self.regularizer.kind is None or self.regularizer.batch_size == ex.plan.batch)):
            losses = ex.train_step(batch, self.lr, self.loss_weights, scaler)
        else:
            out = ex.forward(batch, training=True)
            losses = out.losses  # device copies taken at the forward
            ex.backward(self.loss_weights, host=False, scaler=scaler)
            ex.update(self.lr, scaler, reg_batch=self.regularizer.batch_size, frozen_dense=self.frozen_dense,
                      frozen_embeddings=tuple(self.frozen_embeddings))
        total = self._device_total(losses, reg)
        self._watch.record(total, self.iteration)
        self._loss = total if self.cfg.gen_loss_summary else 0.0

    def train_once(self) -> bool:
        """Low-level ``train()``: one iteration; False (nothing trained) at the end of an epoch-mode source."""
        batch = self._next_batch("train")
        if batch is None:
            return False
        self.step(batch)
        return True

    def resume_at(self, steps: int) -> None:
        """Continue as a run that has done ``steps`` training steps: the step count, the dense optimizer's
        Adam step, the learning-rate schedule and the per-step random numbers (Dropout)."""
        self.iteration = self.executor.step = self.scheduler.step = steps
        if self.device:
            self.executor.dense_steps = steps
        else:
            self._dense_opt.step_count = steps
        self.scheduler.current = self.scheduler.lr_at(steps) if steps else 0.0

    # -- evaluation ----------------------------------------------------------------------------
    @staticmethod
    def _empty_eval() -> dict[str, list[Any]]:
        return {"preds": [], "labels": [], "losses": []}

    def eval_once(self) -> bool:
        """Low-level ``eval()``: one batch into the metric accumulators; False at the end of an epoch-mode
        source."""
        batch = self._next_batch("eval")
        if batch is None:
            return False
        self._forwards += 1
        self._eval_forward = self._forwards
        out = self.executor.forward(batch, training=False)
        self._eval_tensors = out.tensors
        if self.device:
            self._device_eval(out.tensors, out.losses)
            return True
        preds, labels = [], []
        for n in self.losses:
            preds.append(predictions(n.op, np.asarray(out.tensors[n.inputs[0]], np.float64)))
            lab = np.asarray(out.tensors[n.inputs[1]], np.float64)
            labels.append(lab[:, :1] if n.op == "CrossEntropyLoss" else lab)
        self._last_eval = (np.concatenate(preds, axis=1), np.concatenate(labels, axis=1))
        self._eval["preds"].append(self._last_eval[0])
        self._eval["labels"].append(self._last_eval[1])
        self._eval["losses"].append(self._total_loss(out.losses))
        return True

    def _device_float64(self, tensors: Any, name: str) -> Any:
        """A float64 device copy of activation ``name`` of the last forward."""
        cp = _cupy()
        view = tensors.device(name)
        if self.executor.bindings[(name, "activation")].dtype == "bfloat16":
            view = (view.astype(cp.uint32) << 16).view(cp.float32)
        return view.astype(cp.float64)

    def _device_eval(self, tensors: Any, losses: Any) -> None:
        from hgc.runtime.cuda import metrics as dm

        cp = _cupy()
        preds, labels = [], []
        for n in self.losses:
            preds.append(dm.predictions(n.op, self._device_float64(tensors, n.inputs[0])))
            lab = self._device_float64(tensors, n.inputs[1])
            labels.append(lab[:, :1] if n.op == "CrossEntropyLoss" else lab)
        p, y = cp.concatenate(preds, axis=1), cp.concatenate(labels, axis=1)
        self._last_eval = (p, y)
        self._dev_eval.add(p, y, self._device_total(losses, self._reg_term()))

    def evaluate(self, max_batches: int | None, on_batch: Callable[[], None] | None = None
                 ) -> list[tuple[str, float]]:
        """At most ``max_batches`` batches (None: to the end of an epoch-mode source), then the metrics. An
        evaluation source at its end is started over, before and after."""
        self.check_finite()
        self.check_overflow()
        reader = self.reader("eval")
        if reader.is_eof():
            reader.set_source("")
        n = 0
        while max_batches is None or n < max_batches:
            if not self.eval_once():
                reader.set_source("")
                break
            n += 1
            if on_batch is not None:
                on_batch()
        return self.eval_metrics()

    def eval_metrics(self) -> list[tuple[str, float]]:
        """The metrics over the batches evaluated since the last call (then forgotten)."""
        if self.device:
            from hgc.runtime.cuda.metrics import EvalAccumulator

            acc, self._dev_eval = self._dev_eval, EvalAccumulator()
            return acc.result([m for m, _ in self.cfg.metrics_spec])
        ev, self._eval = self._eval, self._empty_eval()
        if not ev["preds"]:
            return [(name, float("nan")) for name, _ in self.cfg.metrics_spec]
        return compute_metrics([m for m, _ in self.cfg.metrics_spec], np.concatenate(ev["preds"]),
                               np.concatenate(ev["labels"]), float(np.mean(ev["losses"])))

    def last_eval_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """(predictions, labels) of the last evaluated batch."""
        if self._last_eval is None:
            raise TrainingError("export_predictions(): no batch has been evaluated yet; call eval() first")
        if self.device:
            return (self._last_eval[0].get(), self._last_eval[1].get())
        return self._last_eval

    def check_out_tensor(self, name: str, which: str) -> np.ndarray:
        """A tensor of the last evaluation step ("Evaluate") or its gradient of the last training step ("Train")."""
        if self.device:
            return self._device_check_out(name, which)
        source = self._train_grads if which == "Train" else self._eval_tensors
        step = "training step (gradients)" if which == "Train" else "evaluation step"
        if name not in source:
            if not self.graph.has_tensor(name):
                raise TrainingError(f"check_out_tensor(): tensor '{name}' was fused away by the pass pipeline; "
                                    f"check out the fused layer's output instead")
            raise TrainingError(f"check_out_tensor(): tensor '{name}' has no value from the last {step}")
        if isinstance(source[name], SparseBatch):
            raise TrainingError(f"check_out_tensor(): tensor '{name}' is a sparse input (keys); check out the "
                                f"embedding that reads it")
        return np.array(source[name], np.float32)

    def _device_check_out(self, name: str, which: str) -> np.ndarray:
        """check_out_tensor on cuda: tensors are read from device memory, which the next forward reuses (an
        evaluation's activations) and which the buffer plan may share (gradients)."""
        ex = self.executor
        train = which == "Train"
        step = "training step (gradients)" if train else "evaluation step"
        if not self.graph.has_tensor(name):
            raise TrainingError(f"check_out_tensor(): tensor '{name}' was fused away by the pass pipeline; "
                                f"check out the fused layer's output instead")
        if not train and name in {s for s, _ in ex.plan.inputs.sparse}:
            raise TrainingError(f"check_out_tensor(): tensor '{name}' is a sparse input (keys); check out the "
                                f"embedding that reads it")
        binding = ex.bindings.get((name, "gradient" if train else "activation"))
        if binding is None or not (self._trained if train else self._eval_forward > 0):
            raise TrainingError(f"check_out_tensor(): tensor '{name}' has no value from the last {step}")
        if not train:
            if self._eval_forward != self._forwards:
                raise TrainingError(f"check_out_tensor(): on the cuda target the activations of an evaluation "
                                    f"step live until the next forward pass, and a training step has run since; "
                                    f"call eval() again before checking out '{name}'")
            return np.array(self._eval_tensors[name], np.float32)
        shared = [b.tensor for b in ex.bindings.values() if b.buffer == binding.buffer and b is not binding]
        if shared:
            raise TrainingError(f"check_out_tensor(): on the cuda target the gradient of '{name}' shares device "
                                f"memory with {sorted(set(shared))[:3]} and is overwritten later in the backward "
                                f"pass; inspect it with HGC_TARGET=cpu")
        return np.array(_cupy().asnumpy(ex.tensor(name, "gradient")), np.float32)

    def check_overflow(self) -> None:
        for table in self.tables.values():
            if table.size > table.capacity:
                raise TrainingError(f"embedding '{table.name}': runtime vocabulary size {table.size} exceeds "
                                    f"its capacity {table.capacity}")

    # -- fit -----------------------------------------------------------------------------------
    def _log_fit_settings(self, num_epochs: int, max_iter: int, eval_interval: int, snapshot: int) -> None:
        cfg = self.cfg
        log.info("=" * 45 + "Model Fit" + "=" * 46)
        if cfg.repeat_dataset:
            log.info(f"Use non-epoch mode with number of iterations: {max_iter}")
        else:
            log.info(f"Use epoch mode with number of epochs: {num_epochs}")
        log.info(f"Training batchsize: {cfg.batchsize}, evaluation batchsize: {cfg.batchsize_eval}")
        log.info(f"Evaluation interval: {eval_interval}, snapshot interval: {snapshot}")
        log.info(f"Dense network trainable: {not self.frozen_dense}")
        for name in self.tables:
            log.info(f"Sparse embedding {name} trainable: {name not in self.frozen_embeddings}")
        log.info(f"Use mixed precision: {cfg.use_mixed_precision}, scaler: {cfg.scaler:f}, "
                 f"use cuda graph: {cfg.use_cuda_graph}")
        s = self.scheduler
        log.info(f"lr: {s.base_lr:f}, warmup_steps: {s.warmup_steps}, end_lr: {s.end_lr:f}")
        log.info(f"decay_start: {s.decay_start}, decay_steps: {s.decay_steps}, decay_power: {s.decay_power:f}")
        log.info(f"Training source file: {self.reader('train').source}")
        log.info(f"Evaluation source file: {self.reader('eval').source if self.has_eval_source() else ''}")

    def _hit_target(self, it: int, max_iter: int, start: float) -> bool:
        """fit()'s evaluation at iteration ``it``: print the metrics; True once AUC reaches its threshold."""
        cfg, t0 = self.cfg, time.time()
        metrics = self.evaluate(cfg.max_eval_batches)
        for name, value in metrics:
            log.info(f"Evaluation, {name}: {value:f}")
        log.info(f"Eval Time for {cfg.max_eval_batches} iters: {time.time() - t0:f}s")
        threshold = dict(cfg.metrics_spec).get("AUC")
        if threshold is None or not dict(metrics)["AUC"] >= threshold:
            return False
        secs = time.time() - start
        log.info(f"Hit target accuracy AUC {threshold:f} at {it} / {max_iter if cfg.repeat_dataset else it} "
                 f"iterations with batchsize {cfg.batchsize} in {secs:.2f}s. Average speed "
                 f"{it * cfg.batchsize / max(secs, 1e-9):f} records/s.")
        return True

    def fit(self, num_epochs: int, max_iter: int, display: int, eval_interval: int, snapshot: int,
            snapshot_prefix: str, save: Callable[[str, int], None],
            passes: Sequence[tuple[str, Callable[[], None]]] | None = None) -> None:
        """HugeCTR's fit: ``num_epochs`` passes over the source (epoch mode) or ``max_iter`` steps. Every step
        takes its learning rate from the scheduler; iteration i (1-based) prints at i % display == 0,
        evaluates at i % eval_interval == 0 (stopping once AUC reaches its metrics_spec threshold) and
        saves a snapshot named i − 1 when (i − 1) % snapshot == 0 (HugeCTR's 0-based timing).

        ``passes`` (epoch mode, the embedding training cache): every epoch reads these sources in order,
        calling each one's function before its first batch; iterations count on across passes."""
        cfg = self.cfg
        epoch_mode = not cfg.repeat_dataset
        self._log_fit_settings(num_epochs, max_iter, eval_interval, snapshot)
        start = tick = time.time()
        it = 0
        with log.progress(None if epoch_mode else max_iter) as advance:
            for epoch in range(num_epochs if epoch_mode else 1):
                if epoch_mode:
                    log.info(f"-----------------------------------Epoch {epoch}-----------------------------------")
                for source, before_pass in passes if passes is not None else [("", None)]:
                    if before_pass is not None:
                        before_pass()
                    if epoch_mode:
                        self.set_source("train", source)
                    while epoch_mode or it < max_iter:
                        batch = self._next_batch("train")
                        if batch is None:
                            break
                        self.lr = self.scheduler.get_next()
                        self.step(batch)
                        it += 1
                        advance(1)
                        if it % display == 0:
                            loss = self.current_loss  # cuda: the one read of the loss (and of the NaN watch)
                            now = time.time()
                            log.info(f"Iter: {it} Time({display} iters): {now - tick:f}s Loss: {loss:f} "
                                     f"lr:{self.lr:f}")
                            tick = now
                        if (it % eval_interval == 0 and self.has_eval_source()
                                and self._hit_target(it, max_iter, start)):
                            return
                        if (it - 1) % snapshot == 0 and it > 1:
                            save(snapshot_prefix, it - 1)
        self.check_finite()
        secs = time.time() - start
        if epoch_mode:
            log.info(f"Finish {num_epochs} epochs {it} global iterations with batchsize {cfg.batchsize} in "
                     f"{secs:.2f}s.")
        else:
            log.info(f"Finish {it} iterations with batchsize: {cfg.batchsize} in {secs:.2f}s.")


_ITERATION_RE = re.compile(r"_(\d+)\.model$")


def snapshot_iteration(path: str) -> int | None:
    """The iteration in a snapshot file name (``…_{iter}.model``), or None."""
    m = _ITERATION_RE.search(os.path.normpath(path))
    return int(m.group(1)) if m else None


class Checkpoints:
    """HugeCTR's snapshot files for one trainer (facts §5): dense weights and optimizer states, BatchNorm
    statistics, and per embedding a sparse model folder plus its optimizer-state file.

    Resuming. HugeCTR's files hold no step counters, but a snapshot's name holds its 0-based iteration i,
    taken after i + 1 steps (fit's timing; give ``save_params_to_files`` the same: the number of steps done
    minus one). Loading the dense optimizer states of ``…_{i}.model`` restores i + 1 as the step count of
    the trainer, the dense optimizer (Adam's t), the learning-rate schedule (call
    ``reset_learning_rate_scheduler`` afterwards for a new schedule) and the per-step random numbers; loading
    an embedding's optimizer states restores its Adam step the same way. A name without an iteration
    restores nothing (counters stay as they are). Not restored: a LazyGlobal table's per-row last-update
    steps (HugeCTR's file has no place for them) and the readers' positions: a resumed run reads its
    sources from the beginning.
    """

    def __init__(self, trainer: Trainer) -> None:
        self.t = trainer

    def _bn_nodes(self) -> list[Any]:
        return [n for n in self.t.executor.nodes if n.op == "BatchNorm"]

    def save(self, prefix: str, iteration: int, write_sparse: Callable[[Any], None] | None = None) -> None:
        """Write every file of the snapshot ``prefix``/``iteration``; they replace older ones all together.
        ``write_sparse(names)``, when given, writes the embeddings instead of the tables' own files (the
        embedding training cache: no sparse optimizer-state files)."""
        from hgc.runtime import checkpoint as ck

        t = self.t
        t.check_finite()
        if getattr(t.executor, "distributed", False):
            from hgc.runtime.dist.checkpoint import save_snapshot

            save_snapshot(t, prefix, iteration)  # collective: rank 0 writes, with hgc_layout.json
            return
        names = ck.snapshot_names(prefix, iteration, len(t.tables))
        with ck.all_or_nothing():
            if write_sparse is not None:
                write_sparse(names)
            for i, (name, table) in enumerate(t.tables.items() if write_sparse is None else ()):
                keys, vectors = table.dump()
                localized = t.graph.node(name).op != "DistributedSlotSparseEmbeddingHash"
                ck.write_sparse_model(names.sparse[i], keys, vectors, table.slot_ids() if localized else None)
                ck.write_sparse_opt(names.sparse_opt[i], t.sparse_opts[name].states())
            ck.write_dense_model(names.dense, t.dense_weights)
            ck.write_dense_opt(names.dense_opt, t.dense_opt.states())
            bns = self._bn_nodes()
            if bns:
                ck.write_ntp(names.ntp, [self._bn_stats(n) for n in bns])
        for path in names.sparse if write_sparse is None else ():
            log.info(f"Rank0: Write hash table to file {path}")
        log.info("Dumping sparse weights to files, successful")
        log.info("Dumping dense weights to file, successful")
        log.info("Dumping dense optimizer states to file, successful")

    def _bn_stats(self, node: Any) -> tuple[np.ndarray, np.ndarray]:
        st = self.t.bn_stats(node.name)
        if "mean" in st and "var" in st:
            return np.asarray(st["mean"], np.float32), np.asarray(st["var"], np.float32)
        width = self.t.executor.weights[node.name][0].size  # cpu, before the first training step
        return np.zeros(width, np.float32), np.ones(width, np.float32)

    def load_dense_weights(self, path: str) -> None:
        from hgc.runtime import checkpoint as ck

        t = self.t
        t.set_dense_weights(ck.read_dense_model(path, t.dense_shapes))
        ntp = path + ".ntp.json"
        if os.path.exists(ntp):
            for n, (mean, var) in zip(self._bn_nodes(), ck.read_ntp(ntp)):
                t.set_bn_stats(n.name, mean, var)

    def load_dense_optimizer_states(self, path: str) -> None:
        from hgc.runtime import checkpoint as ck

        t = self.t
        t.load_dense_opt_states(ck.read_dense_opt(path, len(t.dense_state_kinds), t.dense_shapes))
        i = snapshot_iteration(path)
        if i is not None:
            t.resume_at(i + 1)
            log.info(f"Resuming after {i + 1} iterations (from the file name {os.path.basename(path)})")

    def load_sparse_weights(self, name: str, path: str) -> None:
        from hgc.runtime import checkpoint as ck

        table = self.t.tables[name]
        table.load(*ck.read_sparse_model(path, table.vec_size))

    def load_sparse_optimizer_states(self, name: str, path: str) -> None:
        from hgc.runtime import checkpoint as ck
        from hgc.runtime.dist import checkpoint as dist_ck

        if (not self.t.device or getattr(self.t.executor, "distributed", False)) \
                and dist_ck.needs_resharding(self.t, name, path):
            dist_ck.load_sparse_optimizer_states(self.t, name, path)
            return

        opt, table = self.t.sparse_opts[name], self.t.tables[name]
        opt.load_states(ck.read_sparse_opt(path, len(opt.state_kinds), table.capacity, table.vec_size))
        i = snapshot_iteration(path)
        if i is not None:
            opt.times = i + 1
