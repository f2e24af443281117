"""The offline inference runtime behind ``hugectr.inference.InferenceModel``.

Building. The graph of ``Model.graph_to_json`` is compiled through the same pass pipeline as in training
(batch = ``max_batchsize``, mixed precision as ``use_mixed_precision`` asks) and run by the executor the
training runtime would make (:func:`hgc.runtime.target.make_executor`: cuda when a GPU is usable, else
cpu; ``HGC_TARGET`` forces one), in evaluation mode only. Dense weights come from ``dense_model_file``
(HugeCTR's layout, file order = layer order of the graph JSON), BatchNorm statistics from
``non_trainable_params_file`` or else ``<dense_model_file>.ntp.json`` when present. Each embedding is served
by the hierarchical parameter server (:mod:`hgc.runtime.inference.parameter_server`), filled from the
``sparse_model_files`` (one per embedding, in graph order), behind an embedding cache when
``use_gpu_embedding_cache`` is on. One device: ``deployed_devices[0]``; several are refused for now.

Running. ``predict`` reads ``num_batches`` batches of ``max_batchsize`` samples in dataset order with one
reader thread, wrapping around at the end of the data (so the output always has max_batchsize·num_batches
rows), and returns what the loss layers' predictions become at inference: sigmoid (BinaryCrossEntropyLoss,
MultiCrossEntropyLoss) or the class-1 softmax probability (CrossEntropyLoss), one column per label.
``evaluate`` returns the AUC of the same predictions against the data's labels (the mean over label
columns), as the trainer computes it.
"""
from __future__ import annotations

import functools
import os
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np

from hgc.config import config
from hgc.errors import DataError, NotBuiltError, TrainingError
from hgc.ir.graph import Graph
from hgc.ir.registry import get_op
from hgc.passes.context import PassContext
from hgc.passes.pipeline import run_pipeline
from hgc.runtime import logging as log
from hgc.runtime.checkpoint import read_dense_model, read_ntp, read_sparse_model
from hgc.runtime.cpu.executor import take_rows
from hgc.runtime.data.batch import SparseBatch
from hgc.runtime.data.reader import DataReader
from hgc.runtime.inference.embedding_cache import EmbeddingCache
from hgc.runtime.inference.lookup import EmbeddingLookup, TableSpec, direct_source
from hgc.runtime.inference.parameter_server import (
    ParameterServer,
    TableData,
    check_update_source,
    default_values,
    make_persistent,
    make_volatile,
    settings,
)
from hgc.runtime.metrics import compute_metrics
from hgc.runtime.target import make_executor, resolve_target
from hgc.runtime.trainer import predictions
from hgc.runtime.weights import weight_slices, weight_specs

WHERE = "InferenceParams()"


def _bad(arg: str, value: Any, rule: str) -> ValueError:
    return ValueError(f"{WHERE}: argument '{arg}' = {value!r} is not allowed: {rule}")


def _use_device(devices: list[int]) -> None:
    """Make the one deployed GPU current (cuda target)."""
    from hgc.codegen.nvrtc import import_cupy

    cp: Any = import_cupy()
    count = int(cp.cuda.runtime.getDeviceCount())
    if devices[0] >= count:
        raise _bad("deployed_devices", devices, f"GPU {devices[0]} does not exist (this machine has {count})")
    cp.cuda.Device(devices[0]).use()


class InferenceRuntime:
    """A deployed model: compiled graph, dense weights, parameter server, executor (evaluation only)."""

    def __init__(self, graph: Graph, params: Any, config_path: str) -> None:
        p = self.params = params
        saved = graph.meta.get("model_name")
        if saved and saved != p.model_name:
            raise _bad("model_name", p.model_name, f"must be the model_name the graph was saved with ('{saved}' in "
                                                   f"{config_path})")
        devices = list(p.deployed_devices)
        if len(devices) > 1:
            raise NotBuiltError("multi-GPU inference", f"InferenceParams.deployed_devices = {devices}")
        target = resolve_target()
        if target == "cuda":
            _use_device(devices)
        self.user_graph = graph
        self.compiled = run_pipeline(graph.copy(), PassContext(
            vvgpu=[devices], batchsize=p.max_batchsize, batchsize_eval=p.max_batchsize,
            use_mixed_precision=p.use_mixed_precision, target=target))
        self.graph = self.compiled.graph
        self.input = next(n for n in self.graph.nodes() if get_op(n.op).kind == "input").attrs
        self.losses = [n for n in self.graph.nodes() if get_op(n.op).kind == "loss"]
        weights = self._dense_weights()
        self.caches: dict[str, EmbeddingCache] = {}
        self.ps, lookups = self._parameter_server()
        weakref.finalize(self, self.ps.close)
        self.target, self.executor = self._executor(target, weights, lookups)
        self._load_bn_stats()
        self._last: Any = None
        log.info(f"Inference: model '{p.model_name}' on the {self.target} target"
                 f"{f' (GPU {devices[0]})' if self.target == 'cuda' else ''}, max_batchsize {p.max_batchsize}; "
                 f"parameter server: {self.ps.describe()}; embedding cache: "
                 f"{'on' if p.use_gpu_embedding_cache else 'off'}")

    # -- building -------------------------------------------------------------------------------
    def _dense_weights(self) -> dict[str, list[np.ndarray]]:
        user = self.user_graph
        shapes = [tuple(s.shape) for n in user.nodes() for s in weight_specs(user, n)]
        flat = read_dense_model(self.params.dense_model_file, shapes)
        return {n: flat[s] for n, s in weight_slices(user, self.graph, flat).items()}

    def _parameter_server(self) -> tuple[ParameterServer, dict[str, EmbeddingLookup]]:
        p = self.params
        nodes = [n for n in self.user_graph.nodes() if get_op(n.op).kind == "embedding"]
        defaults = default_values(p.default_value_for_each_table, len(nodes))
        vol = settings(p.volatile_db)
        check_update_source(settings(p.update_source))
        volatile = make_volatile(vol, p.thread_pool_size, seed=0)
        try:
            persistent = make_persistent(settings(p.persistent_db))
            ps = ParameterServer(p.model_name, volatile, persistent, vol["initial_cache_rate"],
                                 vol["cache_missed_embeddings"])
        except BaseException:
            if volatile is not None:
                volatile.close()
            raise
        lookups: dict[str, EmbeddingLookup] = {}
        try:
            for node, path, default in zip(nodes, p.sparse_model_files, defaults):
                spec = TableSpec.of(node)
                keys, vectors, _ = read_sparse_model(path, spec.vec)
                ps.load(TableData(spec.name, spec.vec, keys, vectors, default))
                fetch = functools.partial(ps.fetch, spec.name)
                if p.use_gpu_embedding_cache:
                    cache = EmbeddingCache(spec.name, spec.vec, int(p.cache_size_percentage * keys.shape[0]),
                                           p.hit_rate_threshold, fetch)
                    if p.init_ec:
                        cache.warm(keys, vectors)
                    self.caches[spec.name] = cache
                    lookups[spec.name] = EmbeddingLookup(spec, cache.lookup)
                else:
                    lookups[spec.name] = EmbeddingLookup(spec, direct_source(fetch))
        except BaseException:
            ps.close()
            raise
        return ps, lookups

    def _executor(self, target: str, weights: dict[str, list[np.ndarray]],
                  lookups: dict[str, EmbeddingLookup]) -> tuple[str, Any]:
        passes = [r.name for r in self.compiled.records]
        plans = self.compiled.plans
        if target == "cuda":
            from hgc.runtime.inference.device_lookup import DeviceLookupEmbedding

            device = {name: DeviceLookupEmbedding(lookup) for name, lookup in lookups.items()}
            got, ex = make_executor("cuda", self.graph, plans, weights, device, 0,
                                    forced=config.target == "cuda", passes=passes)
            if got == "cuda":
                for spec in ex.plan.embeddings:
                    device[spec.name].bind(spec, ex.kernels)
                return got, ex
        return make_executor("cpu", self.graph, plans, weights, lookups, 0)

    def _load_bn_stats(self) -> None:
        p = self.params
        bns = [n for n in self.executor.nodes if n.op == "BatchNorm"]
        path = p.non_trainable_params_file or p.dense_model_file + ".ntp.json"
        if p.non_trainable_params_file and not os.path.isfile(path):
            raise _bad("non_trainable_params_file", path, "no such file")
        if not os.path.isfile(path):
            if bns and self.target == "cpu":  # no statistics saved: the initial ones (mean 0, variance 1)
                for n in bns:
                    width = self.executor.weights[n.name][0].size
                    self.executor.state[n.name].update(mean=np.zeros(width, np.float32),
                                                       var=np.ones(width, np.float32))
            return
        stats = read_ntp(path)
        if len(stats) != len(bns):
            raise DataError(path, f"holds the statistics of {len(stats)} BatchNorm layer(s), the model has "
                                  f"{len(bns)}")
        for n, (mean, var) in zip(bns, stats):
            if self.target == "cuda":
                self.executor.set_state(n.name, {"mean": mean, "var": var})
            else:
                self.executor.state[n.name].update(mean=mean, var=var)

    # -- running --------------------------------------------------------------------------------
    def _steps(self, num_batches: int, source: str, fmt: str, check: str, sizes: list[int],
               dsp: Any) -> Iterator[Any]:
        """The executor's results over the first max_batchsize·num_batches samples of ``source`` in dataset
        order, wrapping around at its end. Norm and Parquet batches are all full; Raw data ends in a short
        batch at the end of the file, so more (and the last one cut) may be needed."""
        if getattr(dsp, "use_hdfs", False):
            raise NotBuiltError("reading inference data from HDFS", "DataSourceParams.use_hdfs")
        inp = self.input
        sparse = [(s["slot_num"], list(s["nnz_per_slot"]), s["is_fixed_length"]) for s in inp["sparse"]]
        left = num_batches * self.params.max_batchsize
        with DataReader(fmt, source, self.params.max_batchsize, label_dims=list(inp["label_dims"]),
                        dense_dim=inp["dense_dim"], sparse=sparse, key_dtype=inp["key_dtype"], check_type=check,
                        slot_size_array=list(sizes), repeat=True, num_workers=1) as reader:
            while left > 0:
                batch = reader.read()
                if batch is None:
                    raise TrainingError(f"InferenceModel: the data source {source} ended before "
                                        f"{num_batches} batches")
                rows = min(batch.size, left)
                if not rows:
                    continue
                self._last = self.executor.forward(take_rows(batch, rows), training=False)
                left -= rows
                yield self._last

    def _outputs(self, tensors: Any) -> tuple[np.ndarray, np.ndarray]:
        """(predictions, labels) float64 (n, Σ label columns) of one step."""
        preds, labels = [], []
        for n in self.losses:
            preds.append(predictions(n.op, np.asarray(tensors[n.inputs[0]], np.float64)))
            lab = np.asarray(tensors[n.inputs[1]], np.float64)
            labels.append(lab[:, :1] if n.op == "CrossEntropyLoss" else lab)
        return np.concatenate(preds, axis=1), np.concatenate(labels, axis=1)

    def predict(self, num_batches: int, source: str, fmt: str, check: str, sizes: list[int], dsp: Any,
                sequential: bool = True) -> np.ndarray:
        """Predictions (max_batchsize·num_batches, label columns) float32 in dataset order."""
        out = [self._outputs(step.tensors)[0] for step in self._steps(num_batches, source, fmt, check, sizes, dsp)]
        return np.concatenate(out).astype(np.float32)

    def evaluate(self, num_batches: int, source: str, fmt: str, check: str, sizes: list[int], dsp: Any,
                 sequential: bool = True) -> float:
        """AUC of the predictions of ``num_batches`` batches against their labels."""
        preds, labels = [], []
        for step in self._steps(num_batches, source, fmt, check, sizes, dsp):
            p, y = self._outputs(step.tensors)
            preds.append(p)
            labels.append(y)
        return float(compute_metrics(["AUC"], np.concatenate(preds), np.concatenate(labels), 0.0)[0][1])

    def check_out_tensor(self, name: str) -> np.ndarray:
        """A tensor of the last inference batch (float32)."""
        if self._last is None:
            raise TrainingError("InferenceModel.check_out_tensor(): no batch has been run yet; call predict() or "
                                "evaluate() first")
        if not self.graph.has_tensor(name):
            raise TrainingError(f"InferenceModel.check_out_tensor(): tensor '{name}' was fused away by the pass "
                                f"pipeline; check out the fused layer's output instead")
        value = self._last.tensors[name]
        if isinstance(value, SparseBatch):
            raise TrainingError(f"InferenceModel.check_out_tensor(): tensor '{name}' is a sparse input (keys); "
                                f"check out the embedding that reads it")
        return np.array(value, np.float32)

    def cache_stats(self) -> dict[str, dict[str, float]]:
        """Per embedding with a cache: keys asked, hits, hit rate, refreshes, rows held."""
        return {name: {"queries": c.queries, "hits": c.hits, "hit_rate": c.hit_rate, "refreshes": c.refreshes,
                       "rows": len(c)} for name, c in self.caches.items()}
