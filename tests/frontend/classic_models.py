"""The four classic models written the way HugeCTR's API documents and samples write them, at small sizes.

Each builder takes optional solver / reader / optimizer objects (defaults: a small CPU-sized setup whose
data files need not exist, since building and compiling read no data) and returns the Model with every
layer added, not compiled. ``hugectr`` is the module the script imports (hgc or the hugectr alias).
"""
from __future__ import annotations

from typing import Any

import hgc

SLOT_SIZES = [97, 61, 43, 89, 31, 53, 71, 29, 67, 37, 83, 47, 59, 41, 79, 23, 73, 19, 101, 17, 103, 13, 107,
              11, 109, 7]  # 26 small vocabularies


def _setup(hugectr: Any, solver: Any, reader: Any, optimizer: Any, raw: bool = False) -> tuple[Any, Any, Any]:
    solver = solver or hugectr.CreateSolver(model_name="m", max_eval_batches=2, batchsize_eval=64, batchsize=64,
                                            lr=0.001, vvgpu=[[0]], repeat_dataset=True)
    if reader is None:
        if raw:
            reader = hugectr.DataReaderParams(data_reader_type=hugectr.DataReaderType_t.Raw,
                                              source=["./dlrm_raw/train_data.bin"],
                                              eval_source="./dlrm_raw/validation_data.bin",
                                              check_type=hugectr.Check_t.Non, num_samples=4096,
                                              eval_num_samples=1024)
        else:
            reader = hugectr.DataReaderParams(data_reader_type=hugectr.DataReaderType_t.Norm,
                                              source=["./norm/file_list.txt"],
                                              eval_source="./norm/file_list_test.txt",
                                              check_type=hugectr.Check_t.Sum)
    optimizer = optimizer or hugectr.CreateOptimizer(optimizer_type=hugectr.Optimizer_t.Adam,
                                                     update_type=hugectr.Update_t.Global, beta1=0.9,
                                                     beta2=0.999, epsilon=0.0000001)
    return solver, reader, optimizer


def wdl(solver: Any = None, reader: Any = None, optimizer: Any = None, hugectr: Any = hgc) -> Any:
    """Wide & Deep: a 1-slot wide embedding (vec 1) and a 26-slot deep embedding (vec 16)."""
    solver, reader, optimizer = _setup(hugectr, solver, reader, optimizer)
    model = hugectr.Model(solver, reader, optimizer)
    model.add(hugectr.Input(label_dim=1, label_name="label", dense_dim=13, dense_name="dense",
                            data_reader_sparse_param_array=[hugectr.DataReaderSparseParam("wide_data", 2, True, 1),
                                                            hugectr.DataReaderSparseParam("deep_data", 2, False, 26)]))
    model.add(hugectr.SparseEmbedding(embedding_type=hugectr.Embedding_t.DistributedSlotSparseEmbeddingHash,
                                      workspace_size_per_gpu_in_mb=2, embedding_vec_size=1, combiner="sum",
                                      sparse_embedding_name="sparse_embedding2", bottom_name="wide_data",
                                      optimizer=optimizer))
    model.add(hugectr.SparseEmbedding(embedding_type=hugectr.Embedding_t.DistributedSlotSparseEmbeddingHash,
                                      workspace_size_per_gpu_in_mb=4, embedding_vec_size=16, combiner="sum",
                                      sparse_embedding_name="sparse_embedding1", bottom_name="deep_data",
                                      optimizer=optimizer))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Reshape, bottom_names=["sparse_embedding1"],
                                 top_names=["reshape1"], leading_dim=416))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Reshape, bottom_names=["sparse_embedding2"],
                                 top_names=["reshape2"], leading_dim=1))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Concat, bottom_names=["reshape1", "dense"],
                                 top_names=["concat1"]))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.InnerProduct, bottom_names=["concat1"],
                                 top_names=["fc1"], num_output=1024))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.ReLU, bottom_names=["fc1"], top_names=["relu1"]))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Dropout, bottom_names=["relu1"],
                                 top_names=["dropout1"], dropout_rate=0.5))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.InnerProduct, bottom_names=["dropout1"],
                                 top_names=["fc2"], num_output=1024))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.ReLU, bottom_names=["fc2"], top_names=["relu2"]))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Dropout, bottom_names=["relu2"],
                                 top_names=["dropout2"], dropout_rate=0.5))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.InnerProduct, bottom_names=["dropout2"],
                                 top_names=["fc3"], num_output=1))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Add, bottom_names=["fc3", "reshape2"],
                                 top_names=["add1"]))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.BinaryCrossEntropyLoss, bottom_names=["add1", "label"],
                                 top_names=["loss"]))
    return model


def dcn(solver: Any = None, reader: Any = None, optimizer: Any = None, hugectr: Any = hgc) -> Any:
    """Deep & Cross: MultiCross (6 layers) beside a 2-layer MLP over the embedding + dense concat."""
    solver, reader, optimizer = _setup(hugectr, solver, reader, optimizer)
    model = hugectr.Model(solver, reader, optimizer)
    model.add(hugectr.Input(label_dim=1, label_name="label", dense_dim=13, dense_name="dense",
                            data_reader_sparse_param_array=[hugectr.DataReaderSparseParam("data1", 2, False, 26)]))
    model.add(hugectr.SparseEmbedding(embedding_type=hugectr.Embedding_t.DistributedSlotSparseEmbeddingHash,
                                      workspace_size_per_gpu_in_mb=4, embedding_vec_size=16, combiner="sum",
                                      sparse_embedding_name="sparse_embedding1", bottom_name="data1",
                                      optimizer=optimizer))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Reshape, bottom_names=["sparse_embedding1"],
                                 top_names=["reshape1"], leading_dim=416))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Concat, bottom_names=["reshape1", "dense"],
                                 top_names=["concat1"]))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Slice, bottom_names=["concat1"],
                                 top_names=["slice11", "slice12"], ranges=[(0, 429), (0, 429)]))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.MultiCross, bottom_names=["slice11"],
                                 top_names=["multicross1"], num_layers=6))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.InnerProduct, bottom_names=["slice12"],
                                 top_names=["fc1"], num_output=1024))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.ReLU, bottom_names=["fc1"], top_names=["relu1"]))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Dropout, bottom_names=["relu1"],
                                 top_names=["dropout1"], dropout_rate=0.5))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.InnerProduct, bottom_names=["dropout1"],
                                 top_names=["fc2"], num_output=1024))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.ReLU, bottom_names=["fc2"], top_names=["relu2"]))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Dropout, bottom_names=["relu2"],
                                 top_names=["dropout2"], dropout_rate=0.5))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Concat, bottom_names=["dropout2", "multicross1"],
                                 top_names=["concat2"]))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.InnerProduct, bottom_names=["concat2"],
                                 top_names=["fc3"], num_output=1))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.BinaryCrossEntropyLoss, bottom_names=["fc3", "label"],
                                 top_names=["loss"]))
    return model


def deepfm(solver: Any = None, reader: Any = None, optimizer: Any = None, hugectr: Any = hgc) -> Any:
    """DeepFM: embeddings of width 11 split into a 10-wide factor part (deep MLP + FmOrder2) and a 1-wide
    first-order part, dense features through WeightMultiply into both; three terms added."""
    solver, reader, optimizer = _setup(hugectr, solver, reader, optimizer)
    model = hugectr.Model(solver, reader, optimizer)
    model.add(hugectr.Input(label_dim=1, label_name="label", dense_dim=13, dense_name="dense",
                            data_reader_sparse_param_array=[hugectr.DataReaderSparseParam("data1", 2, False, 26)]))
    model.add(hugectr.SparseEmbedding(embedding_type=hugectr.Embedding_t.DistributedSlotSparseEmbeddingHash,
                                      workspace_size_per_gpu_in_mb=4, embedding_vec_size=11, combiner="sum",
                                      sparse_embedding_name="sparse_embedding1", bottom_name="data1",
                                      optimizer=optimizer))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Reshape, bottom_names=["sparse_embedding1"],
                                 top_names=["reshape1"], leading_dim=11))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Slice, bottom_names=["reshape1"],
                                 top_names=["slice11", "slice12"], ranges=[(0, 10), (10, 11)]))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Reshape, bottom_names=["slice11"],
                                 top_names=["reshape2"], leading_dim=260))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Reshape, bottom_names=["slice12"],
                                 top_names=["reshape3"], leading_dim=26))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Slice, bottom_names=["dense"],
                                 top_names=["slice21", "slice22"], ranges=[(0, 13), (0, 13)]))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.WeightMultiply, bottom_names=["slice21"],
                                 top_names=["weight_multiply1"], weight_dims=[13, 10]))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.WeightMultiply, bottom_names=["slice22"],
                                 top_names=["weight_multiply2"], weight_dims=[13, 1]))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Concat, bottom_names=["reshape2", "weight_multiply1"],
                                 top_names=["concat1"]))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Slice, bottom_names=["concat1"],
                                 top_names=["slice31", "slice32"], ranges=[(0, 390), (0, 390)]))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.InnerProduct, bottom_names=["slice31"],
                                 top_names=["fc1"], num_output=400))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.ReLU, bottom_names=["fc1"], top_names=["relu1"]))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Dropout, bottom_names=["relu1"],
                                 top_names=["dropout1"], dropout_rate=0.5))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.InnerProduct, bottom_names=["dropout1"],
                                 top_names=["fc2"], num_output=400))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.ReLU, bottom_names=["fc2"], top_names=["relu2"]))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Dropout, bottom_names=["relu2"],
                                 top_names=["dropout2"], dropout_rate=0.5))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.InnerProduct, bottom_names=["dropout2"],
                                 top_names=["fc3"], num_output=400))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.ReLU, bottom_names=["fc3"], top_names=["relu3"]))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Dropout, bottom_names=["relu3"],
                                 top_names=["dropout3"], dropout_rate=0.5))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.InnerProduct, bottom_names=["dropout3"],
                                 top_names=["fc4"], num_output=1))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.FmOrder2, bottom_names=["slice32"],
                                 top_names=["fmorder2"], out_dim=10))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.ReduceSum, bottom_names=["fmorder2"],
                                 top_names=["reducesum1"], axis=1))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Concat, bottom_names=["reshape3", "weight_multiply2"],
                                 top_names=["concat2"]))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.ReduceSum, bottom_names=["concat2"],
                                 top_names=["reducesum2"], axis=1))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Add, bottom_names=["fc4", "reducesum1", "reducesum2"],
                                 top_names=["add"]))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.BinaryCrossEntropyLoss, bottom_names=["add", "label"],
                                 top_names=["loss"]))
    return model


def dlrm(solver: Any = None, reader: Any = None, optimizer: Any = None, hugectr: Any = hgc) -> Any:
    """DLRM: one-hot Raw data, a localized one-hot embedding, fused bottom and top MLPs as GroupDenseLayers
    around a two-output Interaction, exactly as the GroupDenseLayer example of the 3.x API text."""
    optimizer = optimizer or hugectr.CreateOptimizer(optimizer_type=hugectr.Optimizer_t.SGD,
                                                     update_type=hugectr.Update_t.Local, atomic_update=True)
    solver, reader, optimizer = _setup(hugectr, solver, reader, optimizer, raw=True)
    model = hugectr.Model(solver, reader, optimizer)
    model.add(hugectr.Input(label_dim=1, label_name="label", dense_dim=13, dense_name="dense",
                            data_reader_sparse_param_array=[hugectr.DataReaderSparseParam("data1", 1, True, 26)]))
    model.add(hugectr.SparseEmbedding(embedding_type=hugectr.Embedding_t.LocalizedSlotSparseEmbeddingOneHot,
                                      slot_size_array=SLOT_SIZES, workspace_size_per_gpu_in_mb=8,
                                      embedding_vec_size=256, combiner="sum",
                                      sparse_embedding_name="sparse_embedding1", bottom_name="data1",
                                      optimizer=optimizer))
    model.add(hugectr.GroupDenseLayer(group_layer_type=hugectr.GroupLayer_t.GroupFusedInnerProduct,
                                      bottom_name=["dense"],
                                      top_name_list=["fc1", "fc2", "fc3"],
                                      num_outputs=[1024, 512, 256],
                                      last_act_type=hugectr.Activation_t.Relu))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Interaction,
                                 bottom_names=["fc3", "sparse_embedding1"],
                                 top_names=["interaction1", "interaction1_grad"]))
    model.add(hugectr.GroupDenseLayer(group_layer_type=hugectr.GroupLayer_t.GroupFusedInnerProduct,
                                      bottom_name_list=["interaction1", "interaction1_grad"],
                                      top_name_list=["fc4", "fc5", "fc6", "fc7", "fc8"],
                                      num_outputs=[1024, 1024, 512, 256, 1],
                                      last_act_type=hugectr.Activation_t.Non))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.BinaryCrossEntropyLoss,
                                 bottom_names=["fc8", "label"],
                                 top_names=["loss"]))
    return model


#: name → builder, for tests that run every classic model.
CLASSIC_MODELS = {"wdl": wdl, "dcn": dcn, "deepfm": deepfm, "dlrm": dlrm}
