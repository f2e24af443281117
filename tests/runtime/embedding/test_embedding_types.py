"""The four Embedding_t types on one device (issue 4, item 2): their placement differs only across GPUs, so on
one GPU (or the cpu target) the two hash types train identically, and so do the two one-hot types."""
from __future__ import annotations

import numpy as np
import pytest

import hgc
from hgc.tools import DataGenerator, DataGeneratorParams
from tests.runtime.tiny import DENSE, SLOTS, Data, add_input, add_wdl_dense, compile_model, new_model, \
    table_rows, train_steps

HASH = ("DistributedSlotSparseEmbeddingHash", "LocalizedSlotSparseEmbeddingHash")
ONE_HOT = ("LocalizedSlotSparseEmbeddingOneHot", "HybridSparseEmbedding")
SGD = dict(optimizer_type=hgc.Optimizer_t.SGD, update_type=hgc.Update_t.Local)


def hash_model(data: Data, kind: str) -> hgc.Model:
    """tiny.wdl with both embeddings of type ``kind``."""
    m = new_model(data, hgc.CreateOptimizer(**SGD), lr=0.2)
    add_input(m)
    for name, bottom, vec, combiner in (("e_wide", "wide", 1, "sum"), ("e_deep", "deep", 4, "mean")):
        m.add(hgc.SparseEmbedding(embedding_type=getattr(hgc.Embedding_t, kind),
                                  workspace_size_per_gpu_in_mb=1, embedding_vec_size=vec, combiner=combiner, sparse_embedding_name=name,
                                  bottom_name=bottom))
    add_wdl_dense(m)
    return compile_model(m)


@pytest.fixture(scope="module")
def raw_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A learnable Raw dataset (one-hot keys local to their slot) of the tiny shape."""
    d = tmp_path_factory.mktemp("raw_one_hot")
    train, test = str(d / "train.bin"), str(d / "test.bin")
    DataGenerator(DataGeneratorParams(
        format=hgc.DataReaderType_t.Raw, label_dim=1, dense_dim=DENSE, num_slot=len(SLOTS),
        i64_input_key=False, source=train, eval_source=test, slot_size_array=list(SLOTS), nnz_array=[1] * len(SLOTS),
        num_samples=600, eval_num_samples=200, learnable=True, seed=5)).generate()
    return train, test


def one_hot_model(raw: tuple[str, str], kind: str) -> hgc.Model:
    solver = hgc.CreateSolver(max_eval_batches=2, batchsize_eval=32, batchsize=32, lr=0.2, vvgpu=[[0]],
                              repeat_dataset=True, seed=1)
    reader = hgc.DataReaderParams(data_reader_type=hgc.DataReaderType_t.Raw, source=[raw[0]],
                                  eval_source=raw[1], check_type=hgc.Check_t.Non, num_samples=600, eval_num_samples=200,
                                  slot_size_array=list(SLOTS), num_workers=1)
    m = hgc.Model(solver, reader, hgc.CreateOptimizer(**SGD))
    m.add(hgc.Input(label_dim=1, label_name="label", dense_dim=DENSE, dense_name="dense",
                    data_reader_sparse_param_array=[hgc.DataReaderSparseParam("keys", 1, True, len(SLOTS))]))
    m.add(hgc.SparseEmbedding(embedding_type=getattr(hgc.Embedding_t, kind), workspace_size_per_gpu_in_mb=0,
                              slot_size_array=list(SLOTS), embedding_vec_size=4, combiner="sum",
                              sparse_embedding_name="e_deep", bottom_name="keys"))
    L = hgc.Layer_t
    for layer, bottoms, tops, kw in (
            (L.Reshape, ["e_deep"], ["r"], {"leading_dim": 4 * len(SLOTS)}),
            (L.Concat, ["r", "dense"], ["c"], {}),
            (L.InnerProduct, ["c"], ["fc1"], {"num_output": 8}),
            (L.ReLU, ["fc1"], ["relu1"], {}),
            (L.InnerProduct, ["relu1"], ["fc2"], {"num_output": 1}),
            (L.BinaryCrossEntropyLoss, ["fc2", "label"], ["loss"], {})):
        m.add(hgc.DenseLayer(layer_type=layer, bottom_names=bottoms, top_names=tops, **kw))
    m.compile()
    return m


@pytest.mark.parametrize("pair", [HASH, ONE_HOT], ids=["hash", "one_hot"])
def test_types_of_one_family_train_identically_on_one_device(data: Data, raw_data: tuple[str, str],
                                                             pair: tuple[str, str]) -> None:
    runs = []
    for kind in pair:
        m = hash_model(data, kind) if pair == HASH else one_hot_model(raw_data, kind)
        assert m.compiled.graph.node("e_deep").op == kind
        runs.append((train_steps(m, 12), table_rows(m, "e_deep")))
    (loss_a, rows_a), (loss_b, rows_b) = runs
    assert loss_a == loss_b and np.array_equal(rows_a, rows_b)
    assert len(set(loss_a)) > 1  # the steps really trained
