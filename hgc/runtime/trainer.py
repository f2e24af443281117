"""The training loop shared by both targets: fit (epoch / non-epoch), evaluation, metrics, snapshots, the
low-level API (train / eval / get_eval_metrics …) and freezing. The target-specific part is the executor.

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
from collections.abc import Callable
from typing import Any

import numpy as np

from hgc.errors import TrainingError
from hgc.ir.graph import Graph
from hgc.ir.registry import get_op
from hgc.passes.context import PipelineResult
from hgc.runtime import logging as log
from hgc.runtime.cpu.executor import CpuExecutor, take_rows
from hgc.runtime.data.batch import Batch, SparseBatch
from hgc.runtime.embedding.capacity import rows_for_workspace
from hgc.runtime.embedding.table import EmbeddingTable
from hgc.runtime.lr_scheduler import LearningRateScheduler
from hgc.runtime.metrics import compute_metrics
from hgc.runtime.optim.dense import make_dense_optimizer
from hgc.runtime.optim.sparse import make_sparse_optimizer
from hgc.runtime.regularizer import Regularizer
from hgc.runtime.run_config import RunConfig
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
        self.dense_weights = init_dense_weights(graph, self.seed)
        self.weight_slices = weight_slices(graph, self.graph, self.dense_weights)
        self.tables: dict[str, EmbeddingTable] = {}
        self.sparse_opts: dict[str, Any] = {}
        for i, node in enumerate(n for n in self.graph.nodes() if get_op(n.op).kind == "embedding"):
            self._add_table(node, i)
        self.executor = CpuExecutor(self.graph, {n: self.dense_weights[s] for n, s in self.weight_slices.items()},
                                    self.tables, self.seed)
        opt = dict(cfg.optimizer)
        self.dense_opt = make_dense_optimizer(opt["optimizer_type"], self.dense_weights,
                                              **{k: opt[k] for k in HYPER_KEYS if k in opt})
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
        self.current_loss = float("nan")
        self._eval: dict[str, list[Any]] = self._empty_eval()
        self._last_eval: tuple[np.ndarray, np.ndarray] | None = None
        self._train_grads: dict[str, Any] = {}
        self._eval_tensors: dict[str, Any] = {}

    # -- construction --------------------------------------------------------------------------
    def _add_table(self, node: Any, index: int) -> None:
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
        try:
            sparse_opt = make_sparse_optimizer(
                opt["optimizer_type"], table.capacity, table.vec_size, update_type=opt["update_type"],
                atomic_update=bool(opt.get("atomic_update", True)), **{k: opt[k] for k in HYPER_KEYS if k in opt})
        except ValueError as e:
            raise ValueError(f"embedding '{node.name}': {e}") from None
        self.tables[node.name] = table
        self.sparse_opts[node.name] = sparse_opt

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
            cache_eval_data=rc.cache_eval_data if eval_ else 0)

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
        return sum(self.loss_weights[k] * v for k, v in losses.items()) + self.regularizer.term(self.dense_weights)

    def step(self, batch: Batch) -> float:
        """Forward, backward and update on one (already trimmed) batch at ``self.lr``; returns the loss."""
        self.iteration += 1
        out = self.executor.forward(batch, training=True)
        loss = self._total_loss(out.losses)
        if not np.isfinite(loss):
            raise TrainingError(f"Train Runtime error: Loss cannot converge (loss = {loss} at iteration "
                                f"{self.iteration})")
        wgrads, egrads = self.executor.backward(self.loss_weights)
        self._train_grads = self.executor.last_grads
        if not self.frozen_dense and self.dense_weights:
            grads = self.regularizer.grads(self.dense_weights)
            for name, gs in wgrads.items():
                for k, g in enumerate(gs, self.weight_slices[name].start):
                    grads[k] += np.asarray(g, grads[k].dtype).reshape(grads[k].shape)
            self.dense_opt.step(grads, self.lr)
        for name, table in self.tables.items():
            if name in self.frozen_embeddings:
                continue
            rows, g = egrads.get(name, (np.zeros(0, np.int64), np.zeros((0, table.vec_size), np.float32)))
            self.sparse_opts[name].update(table.rows, rows, g, self.lr)
        self.current_loss = float(loss) if self.cfg.gen_loss_summary else 0.0
        return self.current_loss

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
        self.iteration = self.executor.step = self.dense_opt.step_count = self.scheduler.step = steps
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
        out = self.executor.forward(batch, training=False)
        self._eval_tensors = out.tensors
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

    def evaluate(self, max_batches: int | None, on_batch: Callable[[], None] | None = None
                 ) -> list[tuple[str, float]]:
        """At most ``max_batches`` batches (None: to the end of an epoch-mode source), then the metrics. An
        evaluation source at its end is started over, before and after."""
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
        ev, self._eval = self._eval, self._empty_eval()
        if not ev["preds"]:
            return [(name, float("nan")) for name, _ in self.cfg.metrics_spec]
        return compute_metrics([m for m, _ in self.cfg.metrics_spec], np.concatenate(ev["preds"]),
                               np.concatenate(ev["labels"]), float(np.mean(ev["losses"])))

    def last_eval_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """(predictions, labels) of the last evaluated batch."""
        if self._last_eval is None:
            raise TrainingError("export_predictions(): no batch has been evaluated yet; call eval() first")
        return self._last_eval

    def check_out_tensor(self, name: str, which: str) -> np.ndarray:
        """A tensor of the last evaluation step ("Evaluate") or its gradient of the last training step ("Train")."""
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
            snapshot_prefix: str, save: Callable[[str, int], None]) -> None:
        """HugeCTR's fit: ``num_epochs`` passes over the source (epoch mode) or ``max_iter`` steps. Every step
        takes its learning rate from the scheduler; iteration i (1-based) prints at i % display == 0,
        evaluates at i % eval_interval == 0 (stopping once AUC reaches its metrics_spec threshold) and
        saves a snapshot named i − 1 when (i − 1) % snapshot == 0 (HugeCTR's 0-based timing)."""
        cfg = self.cfg
        epoch_mode = not cfg.repeat_dataset
        self._log_fit_settings(num_epochs, max_iter, eval_interval, snapshot)
        start = tick = time.time()
        it = 0
        with log.progress(None if epoch_mode else max_iter) as advance:
            for epoch in range(num_epochs if epoch_mode else 1):
                if epoch_mode:
                    log.info(f"-----------------------------------Epoch {epoch}-----------------------------------")
                    self.set_source("train")
                while epoch_mode or it < max_iter:
                    batch = self._next_batch("train")
                    if batch is None:
                        break
                    self.lr = self.scheduler.get_next()
                    loss = self.step(batch)
                    it += 1
                    advance(1)
                    if it % display == 0:
                        now = time.time()
                        log.info(f"Iter: {it} Time({display} iters): {now - tick:f}s Loss: {loss:f} lr:{self.lr:f}")
                        tick = now
                    if it % eval_interval == 0 and self.has_eval_source() and self._hit_target(it, max_iter, start):
                        return
                    if (it - 1) % snapshot == 0 and it > 1:
                        save(snapshot_prefix, it - 1)
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

    def save(self, prefix: str, iteration: int) -> None:
        """Write every file of the snapshot ``prefix``/``iteration``; they replace older ones all together."""
        from hgc.runtime import checkpoint as ck

        t = self.t
        names = ck.snapshot_names(prefix, iteration, len(t.tables))
        with ck.all_or_nothing():
            for i, (name, table) in enumerate(t.tables.items()):
                keys, vectors = table.dump()
                localized = t.graph.node(name).op != "DistributedSlotSparseEmbeddingHash"
                ck.write_sparse_model(names.sparse[i], keys, vectors, table.slot_ids() if localized else None)
                ck.write_sparse_opt(names.sparse_opt[i], t.sparse_opts[name].states())
            ck.write_dense_model(names.dense, t.dense_weights)
            ck.write_dense_opt(names.dense_opt, t.dense_opt.states())
            bns = self._bn_nodes()
            if bns:
                ck.write_ntp(names.ntp, [self._bn_stats(n) for n in bns])
        for path in names.sparse:
            log.info(f"Rank0: Write hash table to file {path}")
        log.info("Dumping sparse weights to files, successful")
        log.info("Dumping dense weights to file, successful")
        log.info("Dumping dense optimizer states to file, successful")

    def _bn_stats(self, node: Any) -> tuple[np.ndarray, np.ndarray]:
        st, width = self.t.executor.state[node.name], self.t.executor.weights[node.name][0].size
        return (np.asarray(st.get("mean", np.zeros(width)), np.float32),
                np.asarray(st.get("var", np.ones(width)), np.float32))

    def load_dense_weights(self, path: str) -> None:
        from hgc.runtime import checkpoint as ck

        t = self.t
        loaded = ck.read_dense_model(path, [w.shape for w in t.dense_weights])
        for w, v in zip(t.dense_weights, loaded):
            w[...] = v
        ntp = path + ".ntp.json"
        if os.path.exists(ntp):
            for n, (mean, var) in zip(self._bn_nodes(), ck.read_ntp(ntp)):
                t.executor.state[n.name].update(mean=mean, var=var)

    def load_dense_optimizer_states(self, path: str) -> None:
        from hgc.runtime import checkpoint as ck

        t = self.t
        t.dense_opt.load_states(ck.read_dense_opt(path, len(t.dense_opt.state_kinds),
                                                  [w.shape for w in t.dense_weights]))
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

        opt, table = self.t.sparse_opts[name], self.t.tables[name]
        opt.load_states(ck.read_sparse_opt(path, len(opt.state_kinds), table.capacity, table.vec_size))
        i = snapshot_iteration(path)
        if i is not None:
            opt.times = i + 1
