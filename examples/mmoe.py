"""MMoE, as HugeCTR's samples/mmoe/mmoe_parquet.py builds it: two labels, shared experts, one softmax gate and
one tower per task, two BCE losses weighted in ``compile(loss_names, loss_weights)``.

    python examples/mmoe.py [--data DIR] [--iters N] [--batch B] [--experts 3] [--seed S]

The sample reads Census-Income (32 categorical columns, two labels); this one generates a Parquet dataset of that
shape whose two labels depend on the features in two different ways. Each gate mixes the experts as
Softmax(FC(x)) -> Scale (each weight repeated over its expert's width) -> ElementwiseMultiply with the
concatenated experts -> Reshape (B, experts, width) -> ReduceSum over the experts. Slice layers hand one tensor
to several readers, as HugeCTR scripts do.
"""
from __future__ import annotations

import argparse

from _data import generate

import hgc as hugectr

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--data", default="/tmp/hgc_mmoe_data")
p.add_argument("--iters", type=int, default=600)
p.add_argument("--batch", type=int, default=512)
p.add_argument("--experts", type=int, default=3)
p.add_argument("--expert-widths", type=int, nargs=2, default=[256, 128], metavar=("W1", "W2"))
p.add_argument("--tower", type=int, default=64)
p.add_argument("--vec", type=int, default=16)
p.add_argument("--lr", type=float, default=0.5)
p.add_argument("--seed", type=int, default=0, help="0: a random seed, as HugeCTR")
args = p.parse_args()

num_slots = 32
slot_sizes = [3 + (37 * i) % 61 for i in range(num_slots)]  # small vocabularies, as Census columns have
train, test = generate(args.data, "Parquet", slot_sizes, dense_dim=0, label_dim=2)
n_exp, (w1, w2) = args.experts, args.expert_widths

solver = hugectr.CreateSolver(max_eval_batches=16, batchsize_eval=1024, batchsize=args.batch, lr=args.lr,
                              vvgpu=[[0]], seed=args.seed, i64_input_key=True, repeat_dataset=True)
reader = hugectr.DataReaderParams(data_reader_type=hugectr.DataReaderType_t.Parquet, source=[train],
                                  eval_source=test, check_type=hugectr.Check_t.Non, slot_size_array=slot_sizes)
optimizer = hugectr.CreateOptimizer(optimizer_type=hugectr.Optimizer_t.SGD, update_type=hugectr.Update_t.Local,
                                    atomic_update=True)
model = hugectr.Model(solver, reader, optimizer)
model.add(hugectr.Input(label_dim=[1, 1], label_name=["label1", "label2"], dense_dim=0, dense_name="dense",
                        data_reader_sparse_param_array=[hugectr.DataReaderSparseParam("data", 1, True, num_slots)]))
model.add(hugectr.SparseEmbedding(embedding_type=hugectr.Embedding_t.LocalizedSlotSparseEmbeddingHash,
                                  workspace_size_per_gpu_in_mb=1, slot_size_array=slot_sizes,
                                  embedding_vec_size=args.vec, combiner="sum", sparse_embedding_name="sparse_embedding",
                                  bottom_name="data", optimizer=optimizer))
L = hugectr.Layer_t
width = num_slots * args.vec
model.add(hugectr.DenseLayer(layer_type=L.Reshape, bottom_names=["sparse_embedding"], top_names=["reshape"],
                             leading_dim=width))
inputs = [f"expert{e}_in" for e in range(n_exp)] + ["gate1_in", "gate2_in"]
model.add(hugectr.DenseLayer(layer_type=L.Slice, bottom_names=["reshape"], top_names=inputs,
                             ranges=[(0, width)] * len(inputs)))
for e in range(n_exp):
    model.add(hugectr.DenseLayer(layer_type=L.InnerProduct, bottom_names=[f"expert{e}_in"],
                                 top_names=[f"expert{e}_fc1"], num_output=w1))
    model.add(hugectr.DenseLayer(layer_type=L.ReLU, bottom_names=[f"expert{e}_fc1"], top_names=[f"expert{e}_relu1"]))
    model.add(hugectr.DenseLayer(layer_type=L.InnerProduct, bottom_names=[f"expert{e}_relu1"],
                                 top_names=[f"expert{e}_fc2"], num_output=w2))
    model.add(hugectr.DenseLayer(layer_type=L.ReLU, bottom_names=[f"expert{e}_fc2"], top_names=[f"expert{e}"]))
model.add(hugectr.DenseLayer(layer_type=L.Concat, bottom_names=[f"expert{e}" for e in range(n_exp)],
                             top_names=["experts"]))
model.add(hugectr.DenseLayer(layer_type=L.Slice, bottom_names=["experts"], top_names=["experts1", "experts2"],
                             ranges=[(0, n_exp * w2)] * 2))
for t in (1, 2):
    model.add(hugectr.DenseLayer(layer_type=L.InnerProduct, bottom_names=[f"gate{t}_in"], top_names=[f"gate{t}_fc"],
                                 num_output=n_exp))
    model.add(hugectr.DenseLayer(layer_type=L.Softmax, bottom_names=[f"gate{t}_fc"], top_names=[f"gate{t}"]))
    model.add(hugectr.DenseLayer(layer_type=L.Scale, bottom_names=[f"gate{t}"], top_names=[f"gate{t}_wide"],
                                 axis=0, factor=w2))
    model.add(hugectr.DenseLayer(layer_type=L.ElementwiseMultiply, bottom_names=[f"gate{t}_wide", f"experts{t}"],
                                 top_names=[f"weighted{t}"]))
    model.add(hugectr.DenseLayer(layer_type=L.Reshape, bottom_names=[f"weighted{t}"], top_names=[f"weighted{t}_3d"],
                                 leading_dim=w2, time_step=n_exp))
    model.add(hugectr.DenseLayer(layer_type=L.ReduceSum, bottom_names=[f"weighted{t}_3d"], top_names=[f"mix{t}_3d"],
                                 axis=1))
    model.add(hugectr.DenseLayer(layer_type=L.Reshape, bottom_names=[f"mix{t}_3d"], top_names=[f"mix{t}"],
                                 leading_dim=w2))
    model.add(hugectr.DenseLayer(layer_type=L.InnerProduct, bottom_names=[f"mix{t}"], top_names=[f"tower{t}_fc1"],
                                 num_output=args.tower))
    model.add(hugectr.DenseLayer(layer_type=L.ReLU, bottom_names=[f"tower{t}_fc1"], top_names=[f"tower{t}_relu"]))
    model.add(hugectr.DenseLayer(layer_type=L.InnerProduct, bottom_names=[f"tower{t}_relu"], top_names=[f"tower{t}"],
                                 num_output=1))
    model.add(hugectr.DenseLayer(layer_type=L.BinaryCrossEntropyLoss, bottom_names=[f"tower{t}", f"label{t}"],
                                 top_names=[f"loss{t}"]))
model.compile(loss_names=["label1", "label2"], loss_weights=[0.5, 0.5])
model.summary()
model.fit(max_iter=args.iters, display=100, eval_interval=200, snapshot=1000000, snapshot_prefix="/tmp/hgc_mmoe")
