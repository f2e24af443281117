"""DLRM, as HugeCTR's samples/dlrm builds it: Raw data, one-hot embedding, GroupDenseLayer MLPs, Interaction.

    python examples/dlrm.py [--data DIR] [--iters N] [--batch B] [--vec 128]
"""
import argparse

import hgc as hugectr
from _data import generate

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--data", default="/tmp/hgc_dlrm_data")
p.add_argument("--iters", type=int, default=300)
p.add_argument("--batch", type=int, default=1024)
p.add_argument("--vec", type=int, default=128)
p.add_argument("--lr", type=float, default=0.5)
args = p.parse_args()

slot_sizes = [1000] * 26
n_train, n_eval = 4 * 16384, 16384
train, test = generate(args.data, "Raw", slot_sizes)

solver = hugectr.CreateSolver(max_eval_batches=16, batchsize_eval=args.batch, batchsize=args.batch, lr=args.lr,
                              warmup_steps=50, vvgpu=[[0]], repeat_dataset=True)
reader = hugectr.DataReaderParams(data_reader_type=hugectr.DataReaderType_t.Raw, source=[train], eval_source=test,
                                  check_type=hugectr.Check_t.Non, num_samples=n_train, eval_num_samples=n_eval,
                                  slot_size_array=slot_sizes)
optimizer = hugectr.CreateOptimizer(optimizer_type=hugectr.Optimizer_t.SGD, update_type=hugectr.Update_t.Local,
                                    atomic_update=True)
model = hugectr.Model(solver, reader, optimizer)
model.add(hugectr.Input(label_dim=1, label_name="label", dense_dim=13, dense_name="dense",
                        data_reader_sparse_param_array=[hugectr.DataReaderSparseParam("data1", 1, True, 26)]))
model.add(hugectr.SparseEmbedding(embedding_type=hugectr.Embedding_t.LocalizedSlotSparseEmbeddingOneHot,
                                  slot_size_array=slot_sizes, workspace_size_per_gpu_in_mb=0,
                                  embedding_vec_size=args.vec, combiner="sum",
                                  sparse_embedding_name="sparse_embedding1", bottom_name="data1",
                                  optimizer=optimizer))
model.add(hugectr.GroupDenseLayer(group_layer_type=hugectr.GroupLayer_t.GroupFusedInnerProduct,
                                  bottom_name_list=["dense"], top_name_list=["fc1", "fc2", "fc3"],
                                  num_outputs=[512, 256, args.vec], last_act_type=hugectr.Activation_t.Relu))
model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Interaction, bottom_names=["fc3", "sparse_embedding1"],
                             top_names=["interaction1"]))
model.add(hugectr.GroupDenseLayer(group_layer_type=hugectr.GroupLayer_t.GroupFusedInnerProduct,
                                  bottom_name_list=["interaction1"], top_name_list=["fc4", "fc5", "fc6", "fc7", "fc8"],
                                  num_outputs=[1024, 1024, 512, 256, 1], last_act_type=hugectr.Activation_t.Non))
model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.BinaryCrossEntropyLoss, bottom_names=["fc8", "label"],
                             top_names=["loss"]))
model.compile()
model.summary()
model.fit(max_iter=args.iters, display=100, eval_interval=100, snapshot=1000000, snapshot_prefix="/tmp/hgc_dlrm")
