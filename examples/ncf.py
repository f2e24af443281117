"""NCF, as HugeCTR's samples/ncf/ncf.py builds it: user and item keys, an MLP, epoch mode, HitRate.

    python examples/ncf.py [--data DIR] [--epochs N] [--batch B] [--vec 64] [--hidden 256] [--seed S]

The sample reads MovieLens (label, one unused dense value, a user slot and an item slot); this one generates a
Norm dataset of that shape whose labels depend on the user and the item. It trains in epoch mode
(``repeat_dataset=False``, ``fit(num_epochs=...)``) and reports HitRate (precision of the predictions above 0.8),
AverageLoss and AUC.
"""
from __future__ import annotations

import argparse

from _data import generate

import hgc as hugectr

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--data", default="/tmp/hgc_ncf_data")
p.add_argument("--epochs", type=int, default=4)
p.add_argument("--batch", type=int, default=1024)
p.add_argument("--vec", type=int, default=64)
p.add_argument("--hidden", type=int, default=256, help="width of the first two MLP layers (then /2, /4)")
p.add_argument("--lr", type=float, default=0.0045)
p.add_argument("--seed", type=int, default=0, help="0: a random seed, as HugeCTR")
args = p.parse_args()

num_users, num_items = 2000, 1000
train, test = generate(args.data, "Norm", [num_users, num_items], dense_dim=1)

solver = hugectr.CreateSolver(max_eval_batches=1000, batchsize_eval=args.batch, batchsize=args.batch, lr=args.lr,
                              vvgpu=[[0]], seed=args.seed, repeat_dataset=False,
                              metrics_spec={hugectr.MetricsType.HitRate: 0.8, hugectr.MetricsType.AverageLoss: 0.0,
                                            hugectr.MetricsType.AUC: 1.0})
reader = hugectr.DataReaderParams(data_reader_type=hugectr.DataReaderType_t.Norm, source=[train],
                                  eval_source=test, check_type=hugectr.Check_t.Sum)
optimizer = hugectr.CreateOptimizer(optimizer_type=hugectr.Optimizer_t.Adam, update_type=hugectr.Update_t.Global,
                                    beta1=0.25, beta2=0.5, epsilon=0.0000001)
model = hugectr.Model(solver, reader, optimizer)
model.add(hugectr.Input(label_dim=1, label_name="label", dense_dim=1, dense_name="dense",
                        data_reader_sparse_param_array=[hugectr.DataReaderSparseParam("data", 1, True, 2)]))
model.add(hugectr.SparseEmbedding(embedding_type=hugectr.Embedding_t.DistributedSlotSparseEmbeddingHash,
                                  workspace_size_per_gpu_in_mb=4, embedding_vec_size=args.vec, combiner="sum",
                                  sparse_embedding_name="mlp_embedding", bottom_name="data", optimizer=optimizer))
L = hugectr.Layer_t
model.add(hugectr.DenseLayer(layer_type=L.Reshape, bottom_names=["mlp_embedding"], top_names=["reshape1"],
                             leading_dim=2 * args.vec))
widths = [args.hidden, args.hidden, args.hidden // 2, args.hidden // 4]
bottom = "reshape1"
for i, width in enumerate(widths, start=1):
    model.add(hugectr.DenseLayer(layer_type=L.InnerProduct, bottom_names=[bottom], top_names=[f"fc{i}"],
                                 num_output=width))
    model.add(hugectr.DenseLayer(layer_type=L.ReLU, bottom_names=[f"fc{i}"], top_names=[f"relu{i}"]))
    model.add(hugectr.DenseLayer(layer_type=L.Dropout, bottom_names=[f"relu{i}"], top_names=[f"dropout{i}"],
                                 dropout_rate=0.5 if i == 1 else 0.2))
    bottom = f"dropout{i}"
model.add(hugectr.DenseLayer(layer_type=L.InnerProduct, bottom_names=[bottom], top_names=["fc5"], num_output=1))
model.add(hugectr.DenseLayer(layer_type=L.BinaryCrossEntropyLoss, bottom_names=["fc5", "label"],
                             top_names=["loss"]))
model.compile()
model.summary()
model.fit(num_epochs=args.epochs, display=50, eval_interval=200, snapshot=1000000, snapshot_prefix="/tmp/hgc_ncf")
