"""The training loop shared by both targets: fit (epoch / non-epoch), evaluation, metrics, snapshots, the
low-level API (train / eval / get_eval_metrics …) and freezing. The target-specific part is the executor.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from hgc.errors import TrainingError
from hgc.ir.graph import Graph
from hgc.ir.registry import get_op
from hgc.passes.context import PipelineResult
from hgc.runtime import logging as log
from hgc.runtime.cpu.executor import CpuExecutor, take_rows
from hgc.runtime.data.batch import Batch
from hgc.runtime.embedding.capacity import rows_for_workspace
from hgc.runtime.embedding.table import EmbeddingTable
from hgc.runtime.lr_scheduler import LearningRateScheduler
from hgc.runtime.optim.dense import make_dense_optimizer
from hgc.runtime.optim.sparse import make_sparse_optimizer
from hgc.runtime.regularizer import Regularizer
from hgc.runtime.run_config import RunConfig
from hgc.runtime.weights import init_dense_weights, split_weights

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


class Trainer:
    """Owns weights, embedding tables, optimizers, scheduler, readers and metrics of one model."""

    def __init__(self, graph: Graph, compiled: PipelineResult, cfg: RunConfig,
                 loss_weights: dict[str, float] | None = None,
                 make_reader: Callable[[str], Any] | None = None) -> None:
        self.cfg = cfg
        self.seed = cfg.seed or int.from_bytes(os.urandom(4), "little")
        log.info(f"Global seed is {self.seed}")
        self.graph, self.user_graph = compiled.graph, graph
        self.dense_weights = init_dense_weights(graph, self.seed)
        self.tables: dict[str, EmbeddingTable] = {}
        self.sparse_opts: dict[str, Any] = {}
        for i, node in enumerate(n for n in self.graph.nodes() if get_op(n.op).kind == "embedding"):
            self._add_table(node, i)
        self.executor = CpuExecutor(self.graph, split_weights(self.graph, self.dense_weights), self.tables,
                                    self.seed)
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
        local_batch = max(1, cfg.batchsize // cfg.world_size)
        self.regularizer = Regularizer(reg.attrs["regularizer_type"] if reg else None,
                                       float(reg.attrs["lambda"]) if reg else 0.0, local_batch)
        self.frozen_dense = False
        self.frozen_embeddings: set[str] = set()
        self._make_reader = make_reader
        self._readers: dict[str, Any] = {}
        self.iteration = 0
        self.current_loss = float("nan")
        self._eval: dict[str, Any] = self._empty_eval()
        self._train_grads: dict[str, Any] = {}
        self._eval_tensors: dict[str, Any] = {}

    # -- construction --------------------------------------------------------------------------
    def _add_table(self, node: Any, index: int) -> None:
        a = node.attrs
        opt = dict(a["optimizer"]) if a.get("optimizer") else dict(self.cfg.optimizer)
        sizes = tuple(a.get("slot_size_array") or ())
        one_hot = node.op in ONE_HOT_TYPES
        if node.op == "DistributedSlotSparseEmbeddingHash" or not sizes:
            capacity = rows_for_workspace(a["workspace_size_per_gpu_in_mb"], a["embedding_vec_size"],
                                          opt["optimizer_type"], opt["update_type"]) * self.cfg.world_size
            sizes_for_table: tuple[int, ...] = ()
        else:
            capacity, sizes_for_table = sum(sizes), sizes
        if capacity <= 0:
            raise ValueError(f"embedding '{node.name}': workspace_size_per_gpu_in_mb="
                             f"{a['workspace_size_per_gpu_in_mb']} holds no rows; raise it or give slot_size_array")
        table = EmbeddingTable(node.name, a["embedding_vec_size"], None if sizes_for_table else capacity,
                               a["combiner"], sizes_for_table, one_hot,
                               rng=np.random.default_rng([self.seed, 104729, index]))
        self.tables[node.name] = table
        self.sparse_opts[node.name] = make_sparse_optimizer(
            opt["optimizer_type"], table.capacity, table.vec_size, update_type=opt["update_type"],
            atomic_update=bool(opt.get("atomic_update", True)),
            **{k: opt[k] for k in HYPER_KEYS if k in opt})

    # -- data ----------------------------------------------------------------------------------
    def reader(self, which: str) -> Any:
        """The "train" or "eval" DataReader, opened on first use."""
        if which not in self._readers:
            self._readers[which] = (self._make_reader or self._open_reader)(which)
        return self._readers[which]

    def _open_reader(self, which: str) -> Any:
        from hgc.runtime.data.reader import DataReader

        rc, cfg = self.cfg.reader, self.cfg
        source: Any = list(rc.source) if which == "train" else rc.eval_source
        if not source:
            raise TrainingError(f"no {which} data source: DataReaderParams.{'source' if which == 'train' else 'eval_source'}"
                                f" is empty")
        if rc.format in ("Norm", "Parquet") and isinstance(source, list):
            source = source[0]
        inp = next(n for n in self.graph.nodes() if get_op(n.op).kind == "input").attrs
        sparse = [(s["slot_num"], list(s["nnz_per_slot"]), s["is_fixed_length"]) for s in inp["sparse"]]
        eval_ = which == "eval"
        return DataReader(
            rc.format, source, cfg.batchsize_eval if eval_ else cfg.batchsize,
            label_dims=list(inp["label_dims"]), dense_dim=inp["dense_dim"], sparse=sparse,
            key_dtype=inp["key_dtype"], check_type=rc.check_type,
            num_samples=rc.eval_num_samples if eval_ else rc.num_samples,
            float_label_dense=rc.float_label_dense, slot_size_array=list(rc.slot_size_array),
            repeat=cfg.repeat_dataset, num_workers=max(1, min(rc.num_workers, os.cpu_count() or 1)),
            cache_eval_data=rc.cache_eval_data if eval_ else 0)

    def _next_train_batch(self) -> Batch | None:
        """The next whole training batch; None at the end of an epoch (the source is then rewound)."""
        reader = self.reader("train")
        while True:
            batch = reader.read()
            if batch is None:
                reader.set_source("")
                return None
            if batch.size < batch.n and self.cfg.drop_incomplete_batch:
                continue  # HugeCTR drops short training batches
            return take_rows(batch, batch.size)

    # -- one step ------------------------------------------------------------------------------
    def set_learning_rate(self, lr: float) -> None:
        """The learning rate of the next steps (fit() sets it from the scheduler every iteration)."""
        self.lr = float(lr)

    def step(self, batch: Batch) -> float:
        """Forward, backward and update on one (already trimmed) batch at ``self.lr``; returns the loss."""
        lr = self.lr
        out = self.executor.forward(batch, training=True)
        loss = sum(self.loss_weights[k] * v for k, v in out.losses.items())
        loss += self.regularizer.term(self.dense_weights)
        self.iteration += 1
        if not np.isfinite(loss):
            raise TrainingError(f"Train Runtime error: Loss cannot converge (loss = {loss} at iteration "
                                f"{self.iteration})")
        wgrads, egrads = self.executor.backward(self.loss_weights)
        self._train_grads = self.executor.last_grads
        if not self.frozen_dense and self.dense_weights:
            grads = self.regularizer.grads(self.dense_weights)
            i = 0
            for node in self.executor.nodes:
                ws = self.executor.weights.get(node.name)
                if not ws:
                    continue
                for j, g in enumerate(wgrads.get(node.name, [])):
                    grads[i + j] += np.asarray(g, grads[i + j].dtype).reshape(grads[i + j].shape)
                i += len(ws)
            self.dense_opt.step(grads, lr)
        for name, table in self.tables.items():
            if name in self.frozen_embeddings:
                continue
            rows, g = egrads.get(name, (np.zeros(0, np.int64), np.zeros((0, table.vec_size), np.float32)))
            self.sparse_opts[name].update(table.rows, rows, g, lr)
        self.current_loss = float(loss) if self.cfg.gen_loss_summary else 0.0
        return self.current_loss

    def train_once(self) -> bool:
        """Low-level ``Model.train()``: one iteration; False when an epoch-mode source is exhausted."""
        batch = self._next_train_batch()
        if batch is None:
            return False
        self.step(batch)
        return True

    # -- evaluation ----------------------------------------------------------------------------
    def _empty_eval(self) -> dict[str, Any]:
        return {"preds": [], "labels": [], "losses": []}

    def eval_once(self) -> bool:
        """One evaluation batch into the metric accumulators; False at the end of an epoch-mode source."""
        reader = self.reader("eval")
        batch = reader.read()
        if batch is None:
            reader.set_source("")
            return False
        batch = take_rows(batch, batch.size)
        if batch.size == 0:
            return True
        out = self.executor.forward(batch, training=False)
        self._eval_tensors = out.tensors
        preds, labels = [], []
        for n in self.losses:
            preds.append(predictions(n.op, np.asarray(out.tensors[n.inputs[0]], np.float64)))
            lab = np.asarray(out.tensors[n.inputs[1]], np.float64)
            labels.append(lab[:, :1] if n.op == "CrossEntropyLoss" else lab)
        self._eval["preds"].append(np.concatenate(preds, axis=1))
        self._eval["labels"].append(np.concatenate(labels, axis=1))
        self._eval["losses"].append(sum(self.loss_weights[k] * v for k, v in out.losses.items()))
        return True

    def last_eval_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """(predictions, labels) of the last evaluated batch."""
        if not self._eval["preds"]:
            raise TrainingError("export_predictions(): no evaluation batch since the last get_eval_metrics(); "
                                "call eval() first")
        return self._eval["preds"][-1], self._eval["labels"][-1]

    def check_out_tensor(self, name: str, which: str) -> np.ndarray:
        """A tensor of the last evaluation step ("Evaluate") or its gradient of the last training step ("Train")."""
        source = self._train_grads if which == "Train" else self._eval_tensors
        if name not in source:
            step = "training (gradient)" if which == "Train" else "evaluation"
            raise TrainingError(f"check_out_tensor(): tensor '{name}' has no value from the last {step} step")
        return np.array(source[name], np.float32)

    def check_overflow(self) -> None:
        for table in self.tables.values():
            if table.size > table.capacity:
                raise TrainingError(f"embedding '{table.name}': runtime vocabulary size {table.size} exceeds "
                                    f"its capacity {table.capacity}")

    def evaluate(self) -> list[tuple[str, float]]:
        """``max_eval_batches`` batches (fewer at the end of an epoch-mode source), then the metrics."""
        for _ in range(self.cfg.max_eval_batches):
            if not self.eval_once():
                break
        return self.eval_metrics()

    def eval_metrics(self) -> list[tuple[str, float]]:
        from hgc.runtime.metrics import compute_metrics

        ev, self._eval = self._eval, self._empty_eval()
        if not ev["preds"]:
            return [(name, float("nan")) for name, _ in self.cfg.metrics_spec]
        preds, labels = np.concatenate(ev["preds"]), np.concatenate(ev["labels"])
        return compute_metrics([m for m, _ in self.cfg.metrics_spec], preds, labels,
                               float(np.mean(ev["losses"])))

    # -- fit -----------------------------------------------------------------------------------
    def fit(self, num_epochs: int, max_iter: int, display: int, eval_interval: int, snapshot: int,
            snapshot_prefix: str, save: Callable[[str, int], None]) -> None:
        cfg = self.cfg
        epoch_mode = not cfg.repeat_dataset
        log.info("=" * 45 + "Model Fit" + "=" * 46)
        if epoch_mode:
            log.info(f"Use epoch mode with number of epochs: {num_epochs}")
        else:
            log.info(f"Use non-epoch mode with number of iterations: {max_iter}")
        log.info(f"Training batchsize: {cfg.batchsize}, evaluation batchsize: {cfg.batchsize_eval}")
        log.info(f"Evaluation interval: {eval_interval}, snapshot interval: {snapshot}")
        log.info(f"Dense network trainable: {not self.frozen_dense}")
        for name in self.tables:
            log.info(f"Sparse embedding {name} trainable: {name not in self.frozen_embeddings}")
        log.info(f"Use mixed precision: {cfg.use_mixed_precision}, scaler: {cfg.scaler:f}, "
                 f"use cuda graph: {cfg.use_cuda_graph}")
        log.info(f"lr: {cfg.lr:f}, warmup_steps: {cfg.warmup_steps}, end_lr: {cfg.end_lr:f}")
        log.info(f"decay_start: {cfg.decay_start}, decay_steps: {cfg.decay_steps}, decay_power: {cfg.decay_power:f}")
        log.info(f"Training source file: {cfg.reader.source[0] if cfg.reader.source else ''}")
        log.info(f"Evaluation source file: {cfg.reader.eval_source}")
        thresholds = dict(cfg.metrics_spec)
        start = tick = time.time()
        total = max_iter if not epoch_mode else None
        bar = log.progress(total)
        it = 0
        epochs = range(num_epochs) if epoch_mode else range(1)
        try:
            for epoch in epochs:
                if epoch_mode:
                    log.info(f"-----------------------------------Epoch {epoch}-----------------------------------")
                while epoch_mode or it < max_iter:
                    batch = self._next_train_batch()
                    if batch is None:
                        if epoch_mode:
                            break
                        raise TrainingError("the training source ran out of data in non-epoch mode")
                    self.lr = self.scheduler.get_next()
                    loss = self.step(batch)
                    it += 1
                    bar.update(1)
                    if display > 0 and it % display == 0:
                        now = time.time()
                        log.info(f"Iter: {it} Time({display} iters): {now - tick:f}s Loss: {loss:f} lr:{self.lr:f}")
                        tick = now
                    if eval_interval > 0 and it % eval_interval == 0 and cfg.reader.eval_source:
                        t0 = time.time()
                        metrics = self.evaluate()
                        for name, value in metrics:
                            log.info(f"Evaluation, {name}: {value:f}")
                        log.info(f"Eval Time for {cfg.max_eval_batches} iters: {time.time() - t0:f}s")
                        auc = dict(metrics).get("AUC")
                        if auc is not None and "AUC" in thresholds and auc >= thresholds["AUC"] > 0 \
                                and thresholds["AUC"] < 1.0:
                            secs = time.time() - start
                            log.info(f"Hit target accuracy AUC {thresholds['AUC']:f} at {it} / "
                                     f"{max_iter if not epoch_mode else it} iterations with batchsize "
                                     f"{cfg.batchsize} in {secs:.2f}s. Average speed "
                                     f"{it * cfg.batchsize / max(secs, 1e-9):f} records/s.")
                            return
                    if snapshot > 0 and (it - 1) % snapshot == 0 and it - 1 != 0:
                        save(snapshot_prefix, it - 1)
        finally:
            bar.close()
        secs = time.time() - start
        if epoch_mode:
            log.info(f"Finish {num_epochs} epochs {it} global iterations with batchsize {cfg.batchsize} in {secs:.2f}s.")
        else:
            log.info(f"Finish {it} iterations with batchsize: {cfg.batchsize} in {secs:.2f}s.")


class Checkpoints:
    """HugeCTR's snapshot files for one trainer (facts §5): dense weights and optimizer states, BatchNorm
    statistics, and per embedding a sparse model folder plus its optimizer-state file."""

    def __init__(self, trainer: Trainer) -> None:
        self.t = trainer

    def _bn_nodes(self) -> list[Any]:
        return [n for n in self.t.executor.nodes if n.op == "BatchNorm"]

    def save(self, prefix: str, iteration: int) -> None:
        from hgc.runtime import checkpoint as ck

        t = self.t
        names = ck.snapshot_names(prefix, iteration, len(t.tables))
        for i, (name, table) in enumerate(t.tables.items()):
            keys, vectors = table.dump()
            localized = t.graph.node(name).op != "DistributedSlotSparseEmbeddingHash"
            ck.write_sparse_model(names.sparse[i], keys, vectors, table.slot_ids() if localized else None)
            ck.write_sparse_opt(names.sparse_opt[i], t.sparse_opts[name].states())
            log.info(f"Rank0: Write hash table to file {names.sparse[i]}")
        log.info("Dumping sparse weights to files, successful")
        ck.write_dense_model(names.dense, t.dense_weights)
        log.info("Dumping dense weights to file, successful")
        ck.write_dense_opt(names.dense_opt, t.dense_opt.states())
        log.info("Dumping dense optimizer states to file, successful")
        bns = self._bn_nodes()
        if bns:
            stats = []
            for n in bns:
                st = t.executor.state[n.name]
                width = t.executor.weights[n.name][0].size
                stats.append((np.asarray(st.get("mean", np.zeros(width)), np.float32),
                              np.asarray(st.get("var", np.ones(width)), np.float32)))
            ck.write_ntp(names.ntp, stats)

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
        states = ck.read_dense_opt(path, len(t.dense_opt.state_kinds), [w.shape for w in t.dense_weights])
        t.dense_opt.load_states(states)

    def load_sparse_weights(self, name: str, path: str) -> None:
        from hgc.runtime import checkpoint as ck

        table = self.t.tables[name]
        keys, vectors, slot_ids = ck.read_sparse_model(path, table.vec_size)
        table.load(keys, vectors, slot_ids)

    def load_sparse_optimizer_states(self, name: str, path: str) -> None:
        from hgc.runtime import checkpoint as ck

        opt, table = self.t.sparse_opts[name], self.t.tables[name]
        states = ck.read_sparse_opt(path, len(opt.state_kinds), table.capacity, table.vec_size)
        opt.load_states(states)
