"""One training run of a tiny model on the GPUs of a ``vvgpu``, in this process or as one rank of
``mpirun -np N python -m tests.runtime.dist.worker …``: build, wrap the trainer for its GPUs, train, evaluate,
optionally save / load a snapshot; rank 0 writes what the tests compare to ``--out`` (an .npz)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import numpy as np

import hgc
from hgc.tools import DataGenerator, DataGeneratorParams
from tests.runtime.tiny import DENSE, SLOTS, add_embeddings, add_input, add_wdl_dense, make_data, runtime

KINDS = ("wdl", "onehot", "hybrid")
BATCH = 36  # divisible by 1, 2, 3, 4 and 6 GPUs


def make_raw(folder: str) -> tuple[str, str]:
    """A learnable one-hot Raw dataset (keys local to their slot) of the tiny shape."""
    train, test = os.path.join(folder, "train.bin"), os.path.join(folder, "test.bin")
    DataGenerator(DataGeneratorParams(
        format=hgc.DataReaderType_t.Raw, label_dim=1, dense_dim=DENSE, num_slot=len(SLOTS), i64_input_key=False,
        source=train, eval_source=test, slot_size_array=list(SLOTS), nnz_array=[1] * len(SLOTS),
        num_samples=720, eval_num_samples=180, learnable=True, seed=5)).generate()
    return train, test


def make_all(folder: str) -> dict[str, Any]:
    norm = make_data(os.path.join(folder, "norm"))
    os.makedirs(os.path.join(folder, "raw"), exist_ok=True)
    return {"norm": [norm.train, norm.test], "raw": list(make_raw(os.path.join(folder, "raw")))}


def build(kind: str, vvgpu: list[list[int]], data: dict[str, Any], *, optimizer: str = "Adam",
          update: str = "Global", batch: int = BATCH, seed: int = 3) -> hgc.Model:
    """``wdl``: a Distributed and a Localized hash table (Norm data); ``onehot`` / ``hybrid``: one table of that
    type over three one-hot slots (Raw data)."""
    solver = hgc.CreateSolver(max_eval_batches=5, batchsize_eval=batch, batchsize=batch, lr=0.01, vvgpu=vvgpu,
                              repeat_dataset=True, seed=seed)
    opt = hgc.CreateOptimizer(optimizer_type=getattr(hgc.Optimizer_t, optimizer),
                              update_type=getattr(hgc.Update_t, update),
                              momentum_factor=0.9 if optimizer in ("MomentumSGD", "Nesterov") else 0.0)
    if kind == "wdl":
        train, test = data["norm"]
        reader = hgc.DataReaderParams(data_reader_type=hgc.DataReaderType_t.Norm, source=[train], eval_source=test,
                                      check_type=hgc.Check_t.Sum, num_workers=1)
        m = hgc.Model(solver, reader, opt)
        add_input(m)
        add_embeddings(m)
        add_wdl_dense(m)
        m.compile()
        return m
    train, test = data["raw"]
    reader = hgc.DataReaderParams(data_reader_type=hgc.DataReaderType_t.Raw, source=[train], eval_source=test,
                                  check_type=hgc.Check_t.Non, num_samples=720, eval_num_samples=180,
                                  slot_size_array=list(SLOTS), num_workers=1)
    m = hgc.Model(solver, reader, opt)
    m.add(hgc.Input(label_dim=1, label_name="label", dense_dim=DENSE, dense_name="dense",
                    data_reader_sparse_param_array=[hgc.DataReaderSparseParam("keys", 1, True, len(SLOTS))]))
    emb = "LocalizedSlotSparseEmbeddingOneHot" if kind == "onehot" else "HybridSparseEmbedding"
    extra = {}
    if kind == "hybrid":
        extra["hybrid_embedding_param"] = hgc.HybridEmbeddingParam(
            2, -1, 0.05, 1.3e11, 2.6e11, 1.0, hgc.CommunicationType.NVLink_SingleNode,
            hgc.HybridEmbeddingType.Distributed)
    m.add(hgc.SparseEmbedding(embedding_type=getattr(hgc.Embedding_t, emb), workspace_size_per_gpu_in_mb=0,
                              slot_size_array=list(SLOTS), embedding_vec_size=4, combiner="sum",
                              sparse_embedding_name="e_deep", bottom_name="keys", **extra))
    L = hgc.Layer_t
    for layer, bottoms, tops, kw in (
            (L.Reshape, ["e_deep"], ["r"], {"leading_dim": 4 * len(SLOTS)}),
            (L.Concat, ["r", "dense"], ["c"], {}),
            (L.InnerProduct, ["c"], ["fc1"], {"num_output": 8}),
            (L.ReLU, ["fc1"], ["relu1"], {}),
            (L.InnerProduct, ["relu1"], ["fc2"], {"num_output": 1}),
            (L.BinaryCrossEntropyLoss, ["fc2", "label"], ["loss"], {})):
        m.add(hgc.DenseLayer(layer_type=layer, bottom_names=bottoms, top_names=tops, **kw))
    m.compile()
    return m


def trainer_of(m: hgc.Model, wrap: bool = True, statistics: int | None = None) -> Any:
    """The model's Trainer, given its GPUs (wrap_executor; a no-op once the Trainer does it itself)."""
    from hgc.runtime.dist.parallel import wrap_executor

    t = runtime(m).trainer
    if wrap:
        wrap_executor(t, m.compiled)
    if statistics is not None:
        for table in t.tables.values():
            emb = getattr(table, "emb", None)
            if emb is not None and hasattr(emb, "statistics_batches"):
                emb.statistics_batches = statistics
    return t


def train(t: Any, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        t.lr = t.scheduler.get_next()
        t.step(t._next_batch("train"))
        out.append(float(t.current_loss))
    return out


def results(t: Any, losses: list[float]) -> dict[str, np.ndarray]:
    """What the tests compare: losses, dense weights, every table's rows by key, evaluation metrics."""
    from hgc.runtime.dist.checkpoint import table_snapshot

    out: dict[str, np.ndarray] = {"losses": np.asarray(losses)}
    for i, w in enumerate(t.dense_weights):
        out[f"dense{i}"] = np.asarray(w, np.float64)
    for name in t.tables:
        state = table_snapshot(t, name)[0]
        order = np.argsort(state.keys, kind="stable")
        out[f"{name}.keys"] = state.keys[order]
        out[f"{name}.vectors"] = state.vectors[order].astype(np.float64)
        for k, s in enumerate(state.states):
            out[f"{name}.state{k}"] = s[order].astype(np.float64)
    metrics = t.evaluate(3)
    out["metrics"] = np.asarray([v for _, v in metrics])
    return out


def run(kind: str, vvgpu: list[list[int]], data: dict[str, Any], steps: int, *, wrap: bool = True,
        save: str | None = None, load: str | None = None, statistics: int | None = None,
        **kw: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """Build, (load), train ``steps`` steps, (save after them as iteration steps-1); the trainer and results."""
    from hgc.runtime.dist.checkpoint import load_snapshot, save_snapshot

    m = build(kind, vvgpu, data, **kw)
    t = trainer_of(m, wrap, statistics)
    if load:
        prefix, it = load.rsplit(":", 1)
        load_snapshot(t, prefix, int(it))
    losses = train(t, steps)
    if save:
        save_snapshot(t, save, t.iteration - 1)
    return t, results(t, losses)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--kind", choices=KINDS, required=True)
    p.add_argument("--vvgpu", required=True, help="JSON, e.g. [[0],[1]]")
    p.add_argument("--data", required=True, help="JSON of make_all()'s paths")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--optimizer", default="Adam")
    p.add_argument("--update", default="Global")
    p.add_argument("--statistics", type=int, default=None)
    p.add_argument("--save", default=None)
    p.add_argument("--load", default=None, help="PREFIX:ITER")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    t, res = run(a.kind, json.loads(a.vvgpu), json.loads(a.data), a.steps, save=a.save, load=a.load,
                 statistics=a.statistics, optimizer=a.optimizer, update=a.update)
    comm = getattr(t.executor, "comm", None)
    res["ranks"] = np.asarray([comm.num_ranks if comm is not None else 1])
    if comm is None or comm.is_root:
        np.savez(a.out, **res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
