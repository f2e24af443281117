"""Tiny generated datasets and models for the training-runtime tests (milliseconds per step on the cpu target;
the helpers read weights and tables through the trainer, so they serve the cuda target too)."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

import hgc
from hgc.tools import DataGenerator, DataGeneratorParams

SLOTS = (40, 25, 15)  # slot 0: the wide input (2 keys); slots 1, 2: the deep input (1 key each)
NNZ = (2, 1, 1)
DENSE = 3
SAMPLES_PER_FILE = 300  # per file; 2 training files: 18 batches of 32 and a short one of 24; 1 eval file
BATCH = 32


@dataclass(frozen=True)
class Data:
    train: str
    test: str
    folder: str


def make_data(folder: str, seed: int = 7, num_files: int = 2, samples_per_file: int = SAMPLES_PER_FILE,
              label_dim: int = 1) -> Data:
    """A learnable Norm dataset under ``folder``: ``num_files`` training files and one evaluation file, each of
    ``samples_per_file`` samples."""
    train, test = os.path.join(folder, "file_list.txt"), os.path.join(folder, "file_list_test.txt")
    DataGenerator(DataGeneratorParams(
        format=hgc.DataReaderType_t.Norm, label_dim=label_dim, dense_dim=DENSE, num_slot=len(SLOTS), i64_input_key=False,
        source=train, eval_source=test, slot_size_array=list(SLOTS), nnz_array=list(NNZ), num_files=num_files,
        eval_num_files=1, num_samples_per_file=samples_per_file, num_samples=num_files * samples_per_file,
        eval_num_samples=samples_per_file, learnable=True, seed=seed)).generate()
    return Data(train, test, folder)


def new_model(data: Data, opt: Any = None, *, batch: int = BATCH, lr: float = 0.01, seed: int = 1,
              repeat: bool = True, max_eval_batches: int = 4, reader_kw: dict[str, Any] | None = None,
              **solver_kw: Any) -> hgc.Model:
    solver = hgc.CreateSolver(max_eval_batches=max_eval_batches, batchsize_eval=batch, batchsize=batch, lr=lr,
                              vvgpu=[[0]], repeat_dataset=repeat, seed=seed, **solver_kw)
    reader = hgc.DataReaderParams(data_reader_type=hgc.DataReaderType_t.Norm, source=[data.train],
                                  eval_source=data.test, check_type=hgc.Check_t.Sum, num_workers=1,
                                  **(reader_kw or {}))
    return hgc.Model(solver, reader, opt or hgc.CreateOptimizer(optimizer_type=hgc.Optimizer_t.Adam))


def add_input(m: hgc.Model) -> None:
    m.add(hgc.Input(label_dim=1, label_name="label", dense_dim=DENSE, dense_name="dense",
                    data_reader_sparse_param_array=[hgc.DataReaderSparseParam("wide", 2, True, 1),
                                                    hgc.DataReaderSparseParam("deep", 1, True, 2)]))


def add_embeddings(m: hgc.Model, emb_opt: Any = None) -> None:
    m.add(hgc.SparseEmbedding(embedding_type=hgc.Embedding_t.DistributedSlotSparseEmbeddingHash,
                              workspace_size_per_gpu_in_mb=1, embedding_vec_size=1, combiner="sum",
                              sparse_embedding_name="e_wide", bottom_name="wide", optimizer=emb_opt))
    m.add(hgc.SparseEmbedding(embedding_type=hgc.Embedding_t.LocalizedSlotSparseEmbeddingHash,
                              workspace_size_per_gpu_in_mb=1, embedding_vec_size=4, combiner="mean",
                              sparse_embedding_name="e_deep", bottom_name="deep", optimizer=emb_opt))


def add_wdl_dense(m: hgc.Model, hidden: int = 8, dropout: float = 0.0, prefix: str = "") -> None:
    """Reshape + Concat → InnerProduct → ReLU (→ Dropout) → InnerProduct, plus the wide part, → BCE loss."""
    p = prefix
    dense = hgc.DenseLayer
    m.add(dense(layer_type=hgc.Layer_t.Reshape, bottom_names=["e_deep"], top_names=[p + "r1"], leading_dim=8))
    m.add(dense(layer_type=hgc.Layer_t.Reshape, bottom_names=["e_wide"], top_names=[p + "r2"], leading_dim=1))
    m.add(dense(layer_type=hgc.Layer_t.Concat, bottom_names=[p + "r1", "dense"], top_names=[p + "c1"]))
    m.add(dense(layer_type=hgc.Layer_t.InnerProduct, bottom_names=[p + "c1"], top_names=[p + "fc1"],
                num_output=hidden))
    m.add(dense(layer_type=hgc.Layer_t.ReLU, bottom_names=[p + "fc1"], top_names=[p + "relu1"]))
    top = p + "relu1"
    if dropout:
        m.add(dense(layer_type=hgc.Layer_t.Dropout, bottom_names=[top], top_names=[p + "drop1"],
                    dropout_rate=dropout))
        top = p + "drop1"
    m.add(dense(layer_type=hgc.Layer_t.InnerProduct, bottom_names=[top], top_names=[p + "fc2"], num_output=1))
    m.add(dense(layer_type=hgc.Layer_t.Add, bottom_names=[p + "fc2", p + "r2"], top_names=[p + "add"]))
    m.add(dense(layer_type=hgc.Layer_t.BinaryCrossEntropyLoss, bottom_names=[p + "add", "label"],
                top_names=[p + "loss"]))


def compile_model(m: hgc.Model, disabled_passes: frozenset[str] = frozenset()) -> hgc.Model:
    """compile(), with the named passes left out of the pipeline."""
    if disabled_passes:
        plain = type(m).pass_context
        m.pass_context = lambda: dataclasses.replace(plain(m), disabled_passes=disabled_passes)  # type: ignore
    m.compile()
    return m


def wdl(data: Data, opt: Any = None, *, emb_opt: Any = None, dropout: float = 0.0, compile: bool = True,
        disabled_passes: frozenset[str] = frozenset(), **kw: Any) -> hgc.Model:
    """A Wide&Deep-like model: a hash embedding per input, FC + ReLU, the wide sum added to the output."""
    m = new_model(data, opt, **kw)
    add_input(m)
    add_embeddings(m, emb_opt)
    add_wdl_dense(m, dropout=dropout)
    return compile_model(m, disabled_passes) if compile else m


def dlrm(data: Data, opt: Any = None, *, disabled_passes: frozenset[str] = frozenset(), **kw: Any) -> hgc.Model:
    """A DLRM-like model: GroupDenseLayer bottom MLP, Interaction with the deep embedding, top MLP group."""
    m = new_model(data, opt, **kw)
    add_input(m)
    m.add(hgc.SparseEmbedding(embedding_type=hgc.Embedding_t.LocalizedSlotSparseEmbeddingHash,
                              workspace_size_per_gpu_in_mb=1, embedding_vec_size=4, combiner="sum",
                              sparse_embedding_name="e_deep", bottom_name="deep"))
    m.add(hgc.GroupDenseLayer(group_layer_type=hgc.GroupLayer_t.GroupFusedInnerProduct, bottom_name_list=["dense"],
                              top_name_list=["fc1", "fc2"], num_outputs=[8, 4],
                              last_act_type=hgc.Activation_t.Relu))
    m.add(hgc.DenseLayer(layer_type=hgc.Layer_t.Interaction, bottom_names=["fc2", "e_deep"], top_names=["inter"]))
    m.add(hgc.GroupDenseLayer(group_layer_type=hgc.GroupLayer_t.GroupFusedInnerProduct, bottom_name_list=["inter"],
                              top_name_list=["fc3", "fc4", "fc5"], num_outputs=[8, 4, 1],
                              last_act_type=hgc.Activation_t.Non))
    m.add(hgc.DenseLayer(layer_type=hgc.Layer_t.BinaryCrossEntropyLoss, bottom_names=["fc5", "label"],
                         top_names=["loss"]))
    return compile_model(m, disabled_passes)


def train_steps(m: hgc.Model, n: int, schedule: bool = True) -> list[float]:
    """n low-level steps (learning rate from the model's scheduler, as fit() does); their losses."""
    sched = m.get_learning_rate_scheduler()
    out = []
    for _ in range(n):
        if schedule:
            m.set_learning_rate(sched.get_next())
        assert m.train()
        out.append(m.get_current_loss())
    return out


def eval_predictions(m: hgc.Model, batches: int = 2) -> np.ndarray:
    """The predictions of the first ``batches`` evaluation batches, through check_out_tensor."""
    out = []
    for _ in range(batches):
        assert m.eval()
        out.append(m.check_out_tensor("label", hgc.Tensor_t.Evaluate))  # the batch's labels, to pin the order
        loss_input = m.compiled.graph.node("loss").inputs[0]
        out.append(m.check_out_tensor(loss_input, hgc.Tensor_t.Evaluate))
    return np.concatenate([o.reshape(-1) for o in out])


def runtime(m: hgc.Model) -> Any:
    """The model's TrainingSession (to look at weights and counters)."""
    return m._runtime("test")


def dense_weights(m: hgc.Model) -> list[np.ndarray]:
    """Copies of the dense weights in file order (either target)."""
    return [w.copy() for w in runtime(m).trainer.dense_weights]


def table_rows(m: hgc.Model, name: str) -> np.ndarray:
    """A copy of every row of an embedding table (either target)."""
    return runtime(m).trainer.table_rows(name)
