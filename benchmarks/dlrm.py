"""DLRM benchmark: hgc against ``torch_dlrm_baseline.py`` in the same run on the same GPU.

MLPerf v1 shape, as the baseline: 26 one-hot tables of ``--rows`` rows (default 1,000,000) and dim 128, bottom
MLP 13-512-256-128, dot Interaction, top MLP 1024-1024-512-256-1, batch 65,536, uniform keys; SGD on the
embeddings (HugeCTR's atomic update) and Adam on the dense weights.

    python benchmarks/dlrm.py [--precisions fp32,tf32,fp16,bf16] [--iters 50] [--no-baseline] [--profile]
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np
from common import Bench, main, uniform_keys

import hgc as hugectr

TABLES, DIM = 26, 128


def build(batch: int, rows: int, solver_kw: dict[str, Any], dim: int = DIM) -> Any:
    """The DLRM model (uncompiled) as HugeCTR's samples/dlrm writes it, in the baseline's shape."""
    slot_sizes = [rows] * TABLES
    solver = hugectr.CreateSolver(batchsize=batch, batchsize_eval=batch, lr=1e-3, vvgpu=[[0]],
                                  repeat_dataset=True, **solver_kw)
    reader = hugectr.DataReaderParams(data_reader_type=hugectr.DataReaderType_t.Raw, source=["./dlrm_train.bin"],
                                      eval_source="./dlrm_eval.bin", check_type=hugectr.Check_t.Non,
                                      num_samples=batch * 64, eval_num_samples=batch, slot_size_array=slot_sizes)
    dense_opt = hugectr.CreateOptimizer(optimizer_type=hugectr.Optimizer_t.Adam, update_type=hugectr.Update_t.Local)
    sgd = hugectr.CreateOptimizer(optimizer_type=hugectr.Optimizer_t.SGD, update_type=hugectr.Update_t.Local,
                                  atomic_update=True)
    model = hugectr.Model(solver, reader, dense_opt)
    model.add(hugectr.Input(label_dim=1, label_name="label", dense_dim=13, dense_name="dense",
                            data_reader_sparse_param_array=[hugectr.DataReaderSparseParam("data1", 1, True, TABLES)]))
    model.add(hugectr.SparseEmbedding(embedding_type=hugectr.Embedding_t.LocalizedSlotSparseEmbeddingOneHot,
                                      slot_size_array=slot_sizes, workspace_size_per_gpu_in_mb=0,
                                      embedding_vec_size=dim, combiner="sum", sparse_embedding_name="sparse_embedding1",
                                      bottom_name="data1", optimizer=sgd))
    model.add(hugectr.GroupDenseLayer(group_layer_type=hugectr.GroupLayer_t.GroupFusedInnerProduct,
                                      bottom_name_list=["dense"], top_name_list=["fc1", "fc2", "fc3"],
                                      num_outputs=[512, 256, dim], last_act_type=hugectr.Activation_t.Relu))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Interaction, bottom_names=["fc3", "sparse_embedding1"],
                                 top_names=["interaction1"]))
    model.add(hugectr.GroupDenseLayer(group_layer_type=hugectr.GroupLayer_t.GroupFusedInnerProduct,
                                      bottom_name_list=["interaction1"],
                                      top_name_list=["fc4", "fc5", "fc6", "fc7", "fc8"],
                                      num_outputs=[1024, 1024, 512, 256, 1], last_act_type=hugectr.Activation_t.Non))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.BinaryCrossEntropyLoss, bottom_names=["fc8", "label"],
                                 top_names=["loss"]))
    return model


def keys(name: str, rng: np.random.Generator, n: int, slots: int, nnz: int, rows: int) -> np.ndarray:
    return uniform_keys(rng, n, slots, nnz, rows)


BENCH = Bench("dlrm", 65536, 1_000_000, build, keys, ("torch_dlrm_baseline.py", ()), lr=1e-3,
              note="hgc: one learning rate for both optimizers (1e-3); the baseline's SGD uses 0.01 "
                   "(the rate does not change the work per step).")

if __name__ == "__main__":
    sys.exit(main(BENCH))
