"""DIN (Deep Interest Network), as HugeCTR's samples/din/din_parquet.py builds it: attention over a user's item
history with FusedReshapeConcat, Scale, Sub, ElementwiseMultiply, Softmax, ReduceSum, ReduceMean and PReLU_Dice.

    python examples/din.py [--data DIR] [--iters N] [--batch B] [--vec 18] [--reshape-concat] [--seed S]

The sample reads Amazon Electronics: a user id (1 slot), 11 good ids and 11 category ids (10 history items, then
the candidate item). This one generates a Parquet dataset of that shape (keys local to their slot, with a
``slot_size_array``) whose label depends on every key. With ``--reshape-concat`` the history/candidate split is
written as Concat(axis=2) + selected Reshapes + Reshape, the pattern the FuseReshapeConcat pass turns into the
same FusedReshapeConcat node.
"""
from __future__ import annotations

import argparse

from _data import generate

import hgc as hugectr

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--data", default="/tmp/hgc_din_data")
p.add_argument("--iters", type=int, default=600)
p.add_argument("--batch", type=int, default=256)
p.add_argument("--vec", type=int, default=18)
p.add_argument("--lr", type=float, default=0.001)
p.add_argument("--reshape-concat", action="store_true", help="build the unfused Reshape/Concat pattern")
p.add_argument("--seed", type=int, default=0, help="0: a random seed, as HugeCTR")
args = p.parse_args()

his = 10  # history length; slot 11 of the good and category inputs is the candidate item
num_users, num_goods, num_cates = 2000, 600, 60
slot_sizes = [num_users] + [num_goods] * (his + 1) + [num_cates] * (his + 1)
train, test = generate(args.data, "Parquet", slot_sizes, dense_dim=0)
v, w = args.vec, 2 * args.vec  # embedding width; width of one item (good ‖ category)

solver = hugectr.CreateSolver(max_eval_batches=4, batchsize_eval=4096, batchsize=args.batch, lr=args.lr,
                              vvgpu=[[0]], seed=args.seed, i64_input_key=True, repeat_dataset=True)
reader = hugectr.DataReaderParams(data_reader_type=hugectr.DataReaderType_t.Parquet, source=[train],
                                  eval_source=test, check_type=hugectr.Check_t.Non, slot_size_array=slot_sizes)
optimizer = hugectr.CreateOptimizer(optimizer_type=hugectr.Optimizer_t.Adam, update_type=hugectr.Update_t.Global,
                                    beta1=0.9, beta2=0.999, epsilon=0.000000001)
model = hugectr.Model(solver, reader, optimizer)
model.add(hugectr.Input(label_dim=1, label_name="label", dense_dim=0, dense_name="dense",
                        data_reader_sparse_param_array=[hugectr.DataReaderSparseParam("UserID", 1, True, 1),
                                                        hugectr.DataReaderSparseParam("GoodID", 1, True, his + 1),
                                                        hugectr.DataReaderSparseParam("CateID", 1, True, his + 1)]))
for name, bottom in (("user", "UserID"), ("good", "GoodID"), ("cate", "CateID")):
    model.add(hugectr.SparseEmbedding(embedding_type=hugectr.Embedding_t.DistributedSlotSparseEmbeddingHash,
                                      workspace_size_per_gpu_in_mb=2, embedding_vec_size=v, combiner="sum",
                                      sparse_embedding_name=f"sparse_embedding_{name}", bottom_name=bottom,
                                      optimizer=optimizer))
L = hugectr.Layer_t


def add(layer_type: hugectr.Layer_t, bottoms: list[str], tops: list[str], **kw: object) -> None:
    model.add(hugectr.DenseLayer(layer_type=layer_type, bottom_names=bottoms, top_names=tops, **kw))


# history rows (B*10, 36) and candidate (B, 36), each row a good vector next to its category vector
if args.reshape_concat:
    add(L.Concat, ["sparse_embedding_good", "sparse_embedding_cate"], ["good_cate"], axis=2)
    add(L.Reshape, ["good_cate"], ["his_flat"], selected=True, selected_slots=list(range(his)))
    add(L.Reshape, ["good_cate"], ["item"], selected=True, selected_slots=[his])
    add(L.Reshape, ["his_flat"], ["item_his"], leading_dim=w)
else:
    add(L.FusedReshapeConcat, ["sparse_embedding_good", "sparse_embedding_cate"], ["item_his", "item"])
add(L.Slice, ["item"], ["item1", "item2"], ranges=[(0, w), (0, w)])
add(L.Slice, ["item_his"], ["item_his1", "item_his2", "item_his3", "item_his4", "item_his5"], ranges=[(0, w)] * 5)

# attention unit: score(candidate, history item) from [c, h, c - h, c * h]
add(L.Scale, ["item1"], ["item_rep"], axis=1, factor=his)  # the candidate once per history row
add(L.Slice, ["item_rep"], ["item_rep1", "item_rep2", "item_rep3"], ranges=[(0, w)] * 3)
add(L.Sub, ["item_rep1", "item_his1"], ["sub_ih"])
add(L.ElementwiseMultiply, ["item_rep2", "item_his2"], ["mul_ih"])
add(L.Concat, ["item_rep3", "item_his3", "sub_ih", "mul_ih"], ["att_in"])
add(L.InnerProduct, ["att_in"], ["att_fc1"], num_output=40)
add(L.InnerProduct, ["att_fc1"], ["att_fc2"], num_output=1)
add(L.Reshape, ["att_fc2"], ["att_score"], leading_dim=his)
add(L.Softmax, ["att_score"], ["att_weight"])
# attention pooling: sum_s weight_s * history_s
add(L.Scale, ["att_weight"], ["att_weight_rep"], axis=0, factor=w)  # each weight over its item's width
add(L.Reshape, ["item_his4"], ["his_row"], leading_dim=his * w)
add(L.ElementwiseMultiply, ["att_weight_rep", "his_row"], ["weighted_his"])
add(L.Reshape, ["weighted_his"], ["weighted_his_3d"], leading_dim=w, time_step=his)
add(L.ReduceSum, ["weighted_his_3d"], ["att_pool_3d"], axis=1)
add(L.Reshape, ["att_pool_3d"], ["att_pool"], leading_dim=w)
# plain mean of the history
add(L.Reshape, ["item_his5"], ["his_3d"], leading_dim=w, time_step=his)
add(L.ReduceMean, ["his_3d"], ["his_mean_3d"], axis=1)
add(L.Reshape, ["his_mean_3d"], ["his_mean"], leading_dim=w)

add(L.Reshape, ["sparse_embedding_user"], ["user"], leading_dim=v)
add(L.Concat, ["user", "his_mean", "att_pool", "item2"], ["din_in"])
add(L.InnerProduct, ["din_in"], ["fc1"], num_output=200)
add(L.PReLU_Dice, ["fc1"], ["dice1"], elu_alpha=0.2, eps=1e-8)
add(L.InnerProduct, ["dice1"], ["fc2"], num_output=80)
add(L.PReLU_Dice, ["fc2"], ["dice2"], elu_alpha=0.2, eps=1e-8)
add(L.InnerProduct, ["dice2"], ["fc3"], num_output=1)
add(L.BinaryCrossEntropyLoss, ["fc3", "label"], ["loss"])
model.compile()
model.summary()
model.fit(max_iter=args.iters, display=100, eval_interval=200, snapshot=1000000, snapshot_prefix="/tmp/hgc_din")
