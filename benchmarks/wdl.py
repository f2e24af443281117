"""Wide & Deep benchmark: hgc against ``torch_ctr_baselines.py --model wdl`` in the same run on the same GPU.

As the baseline and HugeCTR's samples/wdl: wide part = 2 crossed keys per sample → vec 1 (hash embedding
over 2 × ``--rows`` keys); deep part = 26 slots × 16 (hash embedding over 26 × ``--rows`` keys) + 13 dense
= 429 → 1024 → 1024 (ReLU, Dropout 0.5) → 1, plus the wide logit; power-law keys; batch 16,384; Adam with
``Update_t.Local`` on the embeddings (≙ SparseAdam) and Adam on the dense weights.

    python benchmarks/wdl.py [--precisions fp32,tf32,fp16,bf16] [--iters 50] [--no-baseline] [--profile]
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np
from common import Bench, main, powerlaw, slot_powerlaw_keys
from dcn import ctr_solver, workspace_mb

import hgc as hugectr

SLOTS, VEC, HIDDEN = 26, 16, 1024


def build(batch: int, rows: int, solver_kw: dict[str, Any]) -> Any:
    solver, reader, opt = ctr_solver(batch, solver_kw)
    model = hugectr.Model(solver, reader, opt)
    L = hugectr.Layer_t
    model.add(hugectr.Input(label_dim=1, label_name="label", dense_dim=13, dense_name="dense",
                            data_reader_sparse_param_array=[hugectr.DataReaderSparseParam("wide_data", 2, True, 1),
                                                            hugectr.DataReaderSparseParam("deep_data", 1, True, SLOTS)]))
    model.add(hugectr.SparseEmbedding(embedding_type=hugectr.Embedding_t.DistributedSlotSparseEmbeddingHash,
                                      workspace_size_per_gpu_in_mb=workspace_mb(2 * rows, 1), embedding_vec_size=1,
                                      combiner="sum", sparse_embedding_name="sparse_embedding2",
                                      bottom_name="wide_data", optimizer=opt))
    model.add(hugectr.SparseEmbedding(embedding_type=hugectr.Embedding_t.DistributedSlotSparseEmbeddingHash,
                                      workspace_size_per_gpu_in_mb=workspace_mb(SLOTS * rows, VEC),
                                      embedding_vec_size=VEC, combiner="sum", sparse_embedding_name="sparse_embedding1",
                                      bottom_name="deep_data", optimizer=opt))
    model.add(hugectr.DenseLayer(layer_type=L.Reshape, bottom_names=["sparse_embedding1"], top_names=["reshape1"],
                                 leading_dim=SLOTS * VEC))
    model.add(hugectr.DenseLayer(layer_type=L.Reshape, bottom_names=["sparse_embedding2"], top_names=["reshape2"],
                                 leading_dim=1))
    model.add(hugectr.DenseLayer(layer_type=L.Concat, bottom_names=["reshape1", "dense"], top_names=["concat1"]))
    model.add(hugectr.DenseLayer(layer_type=L.InnerProduct, bottom_names=["concat1"], top_names=["fc1"],
                                 num_output=HIDDEN))
    model.add(hugectr.DenseLayer(layer_type=L.ReLU, bottom_names=["fc1"], top_names=["relu1"]))
    model.add(hugectr.DenseLayer(layer_type=L.Dropout, bottom_names=["relu1"], top_names=["dropout1"],
                                 dropout_rate=0.5))
    model.add(hugectr.DenseLayer(layer_type=L.InnerProduct, bottom_names=["dropout1"], top_names=["fc2"],
                                 num_output=HIDDEN))
    model.add(hugectr.DenseLayer(layer_type=L.ReLU, bottom_names=["fc2"], top_names=["relu2"]))
    model.add(hugectr.DenseLayer(layer_type=L.Dropout, bottom_names=["relu2"], top_names=["dropout2"],
                                 dropout_rate=0.5))
    model.add(hugectr.DenseLayer(layer_type=L.InnerProduct, bottom_names=["dropout2"], top_names=["fc3"],
                                 num_output=1))
    model.add(hugectr.DenseLayer(layer_type=L.Add, bottom_names=["fc3", "reshape2"], top_names=["add1"]))
    model.add(hugectr.DenseLayer(layer_type=L.BinaryCrossEntropyLoss, bottom_names=["add1", "label"],
                                 top_names=["loss"]))
    return model


def keys(name: str, rng: np.random.Generator, n: int, slots: int, nnz: int, rows: int) -> np.ndarray:
    if name == "wide_data":  # two crossed keys per sample: one in [0, rows), one in [rows, 2 rows)
        k = powerlaw(rng, n * nnz, rows).reshape(n, nnz)
        return (k + np.arange(nnz, dtype=np.int64)[None, :] * rows).reshape(-1)
    return slot_powerlaw_keys(rng, n, slots, nnz, rows)


BENCH = Bench("wdl", 16384, 1_000_000, build, keys, ("torch_ctr_baselines.py", ("--model", "wdl")))

if __name__ == "__main__":
    sys.exit(main(BENCH))
