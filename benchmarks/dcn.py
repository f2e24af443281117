"""DCN benchmark: hgc against ``torch_ctr_baselines.py --model dcn`` in the same run on the same GPU.

Criteo-Kaggle shape, as the baseline and HugeCTR's samples/dcn: 26 slots × 16 (hash embedding over 26 ×
``--rows`` keys, power-law keys) + 13 dense = 429, 6 cross layers ∥ deep 1024-1024 (ReLU, Dropout 0.5),
concat → 1; batch 16,384; Adam with ``Update_t.Local`` on the embedding (≙ SparseAdam: touched rows only)
and Adam on the dense weights.

    python benchmarks/dcn.py [--precisions fp32,tf32,fp16,bf16] [--iters 50] [--no-baseline] [--profile]
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np
from common import Bench, main, slot_powerlaw_keys

import hgc as hugectr
from hgc.ir.ops.embeddings import workspace_for

SLOTS, VEC = 26, 16


def ctr_solver(batch: int, solver_kw: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(solver, reader params, Adam optimizer with Update_t.Local) shared by the CTR benchmarks."""
    solver = hugectr.CreateSolver(batchsize=batch, batchsize_eval=batch, lr=1e-3, vvgpu=[[0]],
                                  repeat_dataset=True, **solver_kw)
    reader = hugectr.DataReaderParams(data_reader_type=hugectr.DataReaderType_t.Norm, source=["./file_list.txt"],
                                      eval_source="./file_list_test.txt", check_type=hugectr.Check_t.Sum)
    opt = hugectr.CreateOptimizer(optimizer_type=hugectr.Optimizer_t.Adam, update_type=hugectr.Update_t.Local,
                                  beta1=0.9, beta2=0.999, epsilon=1e-8)
    return solver, reader, opt


def workspace_mb(keys: int, vec: int) -> int:
    """workspace_size_per_gpu_in_mb holding ``keys`` rows of ``vec`` with Adam's two state copies."""
    return workspace_for(keys, vec, 2)


def build(batch: int, rows: int, solver_kw: dict[str, Any]) -> Any:
    solver, reader, opt = ctr_solver(batch, solver_kw)
    model = hugectr.Model(solver, reader, opt)
    model.add(hugectr.Input(label_dim=1, label_name="label", dense_dim=13, dense_name="dense",
                            data_reader_sparse_param_array=[hugectr.DataReaderSparseParam("data1", 1, True, SLOTS)]))
    model.add(hugectr.SparseEmbedding(embedding_type=hugectr.Embedding_t.DistributedSlotSparseEmbeddingHash,
                                      workspace_size_per_gpu_in_mb=workspace_mb(SLOTS * rows, VEC),
                                      embedding_vec_size=VEC, combiner="sum", sparse_embedding_name="sparse_embedding1",
                                      bottom_name="data1", optimizer=opt))
    L = hugectr.Layer_t
    model.add(hugectr.DenseLayer(layer_type=L.Reshape, bottom_names=["sparse_embedding1"], top_names=["reshape1"],
                                 leading_dim=SLOTS * VEC))
    model.add(hugectr.DenseLayer(layer_type=L.Concat, bottom_names=["reshape1", "dense"], top_names=["concat1"]))
    model.add(hugectr.DenseLayer(layer_type=L.MultiCross, bottom_names=["concat1"], top_names=["multicross1"],
                                 num_layers=6))
    model.add(hugectr.DenseLayer(layer_type=L.InnerProduct, bottom_names=["concat1"], top_names=["fc1"],
                                 num_output=1024))
    model.add(hugectr.DenseLayer(layer_type=L.ReLU, bottom_names=["fc1"], top_names=["relu1"]))
    model.add(hugectr.DenseLayer(layer_type=L.Dropout, bottom_names=["relu1"], top_names=["dropout1"],
                                 dropout_rate=0.5))
    model.add(hugectr.DenseLayer(layer_type=L.InnerProduct, bottom_names=["dropout1"], top_names=["fc2"],
                                 num_output=1024))
    model.add(hugectr.DenseLayer(layer_type=L.ReLU, bottom_names=["fc2"], top_names=["relu2"]))
    model.add(hugectr.DenseLayer(layer_type=L.Dropout, bottom_names=["relu2"], top_names=["dropout2"],
                                 dropout_rate=0.5))
    model.add(hugectr.DenseLayer(layer_type=L.Concat, bottom_names=["dropout2", "multicross1"],
                                 top_names=["concat2"]))
    model.add(hugectr.DenseLayer(layer_type=L.InnerProduct, bottom_names=["concat2"], top_names=["fc3"],
                                 num_output=1))
    model.add(hugectr.DenseLayer(layer_type=L.BinaryCrossEntropyLoss, bottom_names=["fc3", "label"],
                                 top_names=["loss"]))
    return model


def keys(name: str, rng: np.random.Generator, n: int, slots: int, nnz: int, rows: int) -> np.ndarray:
    return slot_powerlaw_keys(rng, n, slots, nnz, rows)


BENCH = Bench("dcn", 16384, 1_000_000, build, keys, ("torch_ctr_baselines.py", ("--model", "dcn")))

if __name__ == "__main__":
    sys.exit(main(BENCH))
