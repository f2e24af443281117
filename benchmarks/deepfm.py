"""DeepFM benchmark: hgc against ``torch_ctr_baselines.py --model deepfm`` in the same run on the same GPU.

As the baseline and HugeCTR's samples/deepfm: 26 slots × 11 (10 for FM/deep + 1 first-order; hash
embedding over 26 × ``--rows`` keys, power-law keys), dense 13 × 10 weights (WeightMultiply), FM second
order, deep 400-400-400 (ReLU, Dropout 0.5) → 1; batch 16,384; Adam with ``Update_t.Local`` on the
embedding (≙ SparseAdam) and Adam on the dense weights.

    python benchmarks/deepfm.py [--precisions fp32,tf32,fp16,bf16] [--iters 50] [--no-baseline] [--profile]
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np
from common import Bench, main, slot_powerlaw_keys
from dcn import ctr_solver, workspace_mb

import hgc as hugectr

SLOTS, VEC, HIDDEN = 26, 11, 400


def build(batch: int, rows: int, solver_kw: dict[str, Any]) -> Any:
    solver, reader, opt = ctr_solver(batch, solver_kw)
    model = hugectr.Model(solver, reader, opt)
    L = hugectr.Layer_t
    model.add(hugectr.Input(label_dim=1, label_name="label", dense_dim=13, dense_name="dense",
                            data_reader_sparse_param_array=[hugectr.DataReaderSparseParam("data1", 1, True, SLOTS)]))
    model.add(hugectr.SparseEmbedding(embedding_type=hugectr.Embedding_t.DistributedSlotSparseEmbeddingHash,
                                      workspace_size_per_gpu_in_mb=workspace_mb(SLOTS * rows, VEC),
                                      embedding_vec_size=VEC, combiner="sum", sparse_embedding_name="sparse_embedding1",
                                      bottom_name="data1", optimizer=opt))
    model.add(hugectr.DenseLayer(layer_type=L.Reshape, bottom_names=["sparse_embedding1"], top_names=["reshape1"],
                                 leading_dim=VEC))
    model.add(hugectr.DenseLayer(layer_type=L.Slice, bottom_names=["reshape1"], top_names=["slice11", "slice12"],
                                 ranges=[(0, 10), (10, 11)]))
    model.add(hugectr.DenseLayer(layer_type=L.Reshape, bottom_names=["slice11"], top_names=["reshape2"],
                                 leading_dim=SLOTS * 10))
    model.add(hugectr.DenseLayer(layer_type=L.Reshape, bottom_names=["slice12"], top_names=["reshape3"],
                                 leading_dim=SLOTS))
    model.add(hugectr.DenseLayer(layer_type=L.Slice, bottom_names=["dense"], top_names=["slice21", "slice22"],
                                 ranges=[(0, 13), (0, 13)]))
    model.add(hugectr.DenseLayer(layer_type=L.WeightMultiply, bottom_names=["slice21"],
                                 top_names=["weight_multiply1"], weight_dims=[13, 10]))
    model.add(hugectr.DenseLayer(layer_type=L.WeightMultiply, bottom_names=["slice22"],
                                 top_names=["weight_multiply2"], weight_dims=[13, 1]))
    model.add(hugectr.DenseLayer(layer_type=L.Concat, bottom_names=["reshape2", "weight_multiply1"],
                                 top_names=["concat1"]))
    model.add(hugectr.DenseLayer(layer_type=L.Slice, bottom_names=["concat1"], top_names=["slice31", "slice32"],
                                 ranges=[(0, 390), (0, 390)]))
    model.add(hugectr.DenseLayer(layer_type=L.InnerProduct, bottom_names=["slice31"], top_names=["fc1"],
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
                                 num_output=HIDDEN))
    model.add(hugectr.DenseLayer(layer_type=L.ReLU, bottom_names=["fc3"], top_names=["relu3"]))
    model.add(hugectr.DenseLayer(layer_type=L.Dropout, bottom_names=["relu3"], top_names=["dropout3"],
                                 dropout_rate=0.5))
    model.add(hugectr.DenseLayer(layer_type=L.InnerProduct, bottom_names=["dropout3"], top_names=["fc4"],
                                 num_output=1))
    model.add(hugectr.DenseLayer(layer_type=L.FmOrder2, bottom_names=["slice32"], top_names=["fmorder2"],
                                 out_dim=10))
    model.add(hugectr.DenseLayer(layer_type=L.ReduceSum, bottom_names=["fmorder2"], top_names=["reducesum1"],
                                 axis=1))
    model.add(hugectr.DenseLayer(layer_type=L.Concat, bottom_names=["reshape3", "weight_multiply2"],
                                 top_names=["concat2"]))
    model.add(hugectr.DenseLayer(layer_type=L.ReduceSum, bottom_names=["concat2"], top_names=["reducesum2"],
                                 axis=1))
    model.add(hugectr.DenseLayer(layer_type=L.Add, bottom_names=["fc4", "reducesum1", "reducesum2"],
                                 top_names=["add"]))
    model.add(hugectr.DenseLayer(layer_type=L.BinaryCrossEntropyLoss, bottom_names=["add", "label"],
                                 top_names=["loss"]))
    return model


def keys(name: str, rng: np.random.Generator, n: int, slots: int, nnz: int, rows: int) -> np.ndarray:
    return slot_powerlaw_keys(rng, n, slots, nnz, rows)


BENCH = Bench("deepfm", 16384, 1_000_000, build, keys, ("torch_ctr_baselines.py", ("--model", "deepfm")))

if __name__ == "__main__":
    sys.exit(main(BENCH))
