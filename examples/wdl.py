"""Wide & Deep, as HugeCTR's samples/wdl/wdl.py builds it, on a generated Norm dataset.

    python examples/wdl.py [--data DIR] [--iters N] [--batch B]

Runs on the GPU when one is visible (cuda target), otherwise on the cpu target (HGC_TARGET overrides).
"""
import argparse

import hgc as hugectr
from _data import generate

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--data", default="/tmp/hgc_wdl_data")
p.add_argument("--iters", type=int, default=400)
p.add_argument("--batch", type=int, default=1024)
p.add_argument("--hidden", type=int, default=1024)
args = p.parse_args()

slot_sizes = [2000] + [1000] * 26  # one wide slot (crossed keys), 26 deep slots
train, test = generate(args.data, "Norm", slot_sizes, nnz_array=[2] + [1] * 26)

solver = hugectr.CreateSolver(max_eval_batches=16, batchsize_eval=args.batch, batchsize=args.batch, lr=0.001,
                              vvgpu=[[0]], repeat_dataset=True)
reader = hugectr.DataReaderParams(data_reader_type=hugectr.DataReaderType_t.Norm, source=[train],
                                  eval_source=test, check_type=hugectr.Check_t.Sum)
optimizer = hugectr.CreateOptimizer(optimizer_type=hugectr.Optimizer_t.Adam, update_type=hugectr.Update_t.Global,
                                    beta1=0.9, beta2=0.999, epsilon=0.0000001)
model = hugectr.Model(solver, reader, optimizer)
model.add(hugectr.Input(label_dim=1, label_name="label", dense_dim=13, dense_name="dense",
                        data_reader_sparse_param_array=[hugectr.DataReaderSparseParam("wide_data", 2, True, 1),
                                                        hugectr.DataReaderSparseParam("deep_data", 1, True, 26)]))
model.add(hugectr.SparseEmbedding(embedding_type=hugectr.Embedding_t.DistributedSlotSparseEmbeddingHash,
                                  workspace_size_per_gpu_in_mb=1, embedding_vec_size=1, combiner="sum",
                                  sparse_embedding_name="sparse_embedding2", bottom_name="wide_data",
                                  optimizer=optimizer))
model.add(hugectr.SparseEmbedding(embedding_type=hugectr.Embedding_t.DistributedSlotSparseEmbeddingHash,
                                  workspace_size_per_gpu_in_mb=8, embedding_vec_size=16, combiner="sum",
                                  sparse_embedding_name="sparse_embedding1", bottom_name="deep_data",
                                  optimizer=optimizer))
model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Reshape, bottom_names=["sparse_embedding1"],
                             top_names=["reshape1"], leading_dim=416))
model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Reshape, bottom_names=["sparse_embedding2"],
                             top_names=["reshape2"], leading_dim=1))
model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Concat, bottom_names=["reshape1", "dense"],
                             top_names=["concat1"]))
model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.InnerProduct, bottom_names=["concat1"],
                             top_names=["fc1"], num_output=args.hidden))
model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.ReLU, bottom_names=["fc1"], top_names=["relu1"]))
model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Dropout, bottom_names=["relu1"], top_names=["dropout1"],
                             dropout_rate=0.5))
model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.InnerProduct, bottom_names=["dropout1"],
                             top_names=["fc2"], num_output=args.hidden))
model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.ReLU, bottom_names=["fc2"], top_names=["relu2"]))
model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Dropout, bottom_names=["relu2"], top_names=["dropout2"],
                             dropout_rate=0.5))
model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.InnerProduct, bottom_names=["dropout2"],
                             top_names=["fc3"], num_output=1))
model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Add, bottom_names=["fc3", "reshape2"], top_names=["add1"]))
model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.BinaryCrossEntropyLoss, bottom_names=["add1", "label"],
                             top_names=["loss"]))
model.compile()
model.summary()
model.fit(max_iter=args.iters, display=100, eval_interval=200, snapshot=1000000, snapshot_prefix="/tmp/hgc_wdl")
