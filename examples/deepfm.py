"""DeepFM, as HugeCTR's samples/deepfm/deepfm.py builds it (Slice, WeightMultiply, FmOrder2, ReduceSum).

    python examples/deepfm.py [--data DIR] [--iters N] [--batch B]
"""
import argparse

import hgc as hugectr
from _data import generate

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--data", default="/tmp/hgc_deepfm_data")
p.add_argument("--iters", type=int, default=400)
p.add_argument("--batch", type=int, default=1024)
p.add_argument("--hidden", type=int, default=400)
args = p.parse_args()

train, test = generate(args.data, "Norm", [1000] * 26)

solver = hugectr.CreateSolver(max_eval_batches=16, batchsize_eval=args.batch, batchsize=args.batch, lr=0.001,
                              vvgpu=[[0]], repeat_dataset=True)
reader = hugectr.DataReaderParams(data_reader_type=hugectr.DataReaderType_t.Norm, source=[train],
                                  eval_source=test, check_type=hugectr.Check_t.Sum)
optimizer = hugectr.CreateOptimizer(optimizer_type=hugectr.Optimizer_t.Adam, update_type=hugectr.Update_t.Global,
                                    beta1=0.9, beta2=0.999, epsilon=0.0000001)
model = hugectr.Model(solver, reader, optimizer)
model.add(hugectr.Input(label_dim=1, label_name="label", dense_dim=13, dense_name="dense",
                        data_reader_sparse_param_array=[hugectr.DataReaderSparseParam("data1", 1, True, 26)]))
model.add(hugectr.SparseEmbedding(embedding_type=hugectr.Embedding_t.DistributedSlotSparseEmbeddingHash,
                                  workspace_size_per_gpu_in_mb=8, embedding_vec_size=11, combiner="sum",
                                  sparse_embedding_name="sparse_embedding1", bottom_name="data1",
                                  optimizer=optimizer))
L = hugectr.Layer_t
model.add(hugectr.DenseLayer(layer_type=L.Reshape, bottom_names=["sparse_embedding1"], top_names=["reshape1"],
                             leading_dim=11))
model.add(hugectr.DenseLayer(layer_type=L.Slice, bottom_names=["reshape1"], top_names=["slice11", "slice12"],
                             ranges=[(0, 10), (10, 11)]))
model.add(hugectr.DenseLayer(layer_type=L.Reshape, bottom_names=["slice11"], top_names=["reshape2"],
                             leading_dim=260))
model.add(hugectr.DenseLayer(layer_type=L.Reshape, bottom_names=["slice12"], top_names=["reshape3"],
                             leading_dim=26))
model.add(hugectr.DenseLayer(layer_type=L.Slice, bottom_names=["dense"], top_names=["slice21", "slice22"],
                             ranges=[(0, 13), (0, 13)]))
model.add(hugectr.DenseLayer(layer_type=L.WeightMultiply, bottom_names=["slice21"], top_names=["weight_multiply1"],
                             weight_dims=[13, 10]))
model.add(hugectr.DenseLayer(layer_type=L.WeightMultiply, bottom_names=["slice22"], top_names=["weight_multiply2"],
                             weight_dims=[13, 1]))
model.add(hugectr.DenseLayer(layer_type=L.Concat, bottom_names=["reshape2", "weight_multiply1"],
                             top_names=["concat1"]))
model.add(hugectr.DenseLayer(layer_type=L.Slice, bottom_names=["concat1"], top_names=["slice31", "slice32"],
                             ranges=[(0, 390), (0, 390)]))
model.add(hugectr.DenseLayer(layer_type=L.InnerProduct, bottom_names=["slice31"], top_names=["fc1"],
                             num_output=args.hidden))
model.add(hugectr.DenseLayer(layer_type=L.ReLU, bottom_names=["fc1"], top_names=["relu1"]))
model.add(hugectr.DenseLayer(layer_type=L.Dropout, bottom_names=["relu1"], top_names=["dropout1"], dropout_rate=0.5))
model.add(hugectr.DenseLayer(layer_type=L.InnerProduct, bottom_names=["dropout1"], top_names=["fc2"],
                             num_output=args.hidden))
model.add(hugectr.DenseLayer(layer_type=L.ReLU, bottom_names=["fc2"], top_names=["relu2"]))
model.add(hugectr.DenseLayer(layer_type=L.Dropout, bottom_names=["relu2"], top_names=["dropout2"], dropout_rate=0.5))
model.add(hugectr.DenseLayer(layer_type=L.InnerProduct, bottom_names=["dropout2"], top_names=["fc3"],
                             num_output=args.hidden))
model.add(hugectr.DenseLayer(layer_type=L.ReLU, bottom_names=["fc3"], top_names=["relu3"]))
model.add(hugectr.DenseLayer(layer_type=L.Dropout, bottom_names=["relu3"], top_names=["dropout3"], dropout_rate=0.5))
model.add(hugectr.DenseLayer(layer_type=L.InnerProduct, bottom_names=["dropout3"], top_names=["fc4"], num_output=1))
model.add(hugectr.DenseLayer(layer_type=L.FmOrder2, bottom_names=["slice32"], top_names=["fmorder2"], out_dim=10))
model.add(hugectr.DenseLayer(layer_type=L.ReduceSum, bottom_names=["fmorder2"], top_names=["reducesum1"], axis=1))
model.add(hugectr.DenseLayer(layer_type=L.Concat, bottom_names=["reshape3", "weight_multiply2"],
                             top_names=["concat2"]))
model.add(hugectr.DenseLayer(layer_type=L.ReduceSum, bottom_names=["concat2"], top_names=["reducesum2"], axis=1))
model.add(hugectr.DenseLayer(layer_type=L.Add, bottom_names=["fc4", "reducesum1", "reducesum2"], top_names=["add"]))
model.add(hugectr.DenseLayer(layer_type=L.BinaryCrossEntropyLoss, bottom_names=["add", "label"], top_names=["loss"]))
model.compile()
model.summary()
model.fit(max_iter=args.iters, display=100, eval_interval=200, snapshot=1000000, snapshot_prefix="/tmp/hgc_deepfm")
