"""Pass-by-pass Norm datasets with keyset files, and models with and without the embedding training cache.

The inputs are those of tests/runtime/tiny.py (a "wide" input: 1 slot of 2 keys; a "deep" input: 2 slots of 1
key; 3 dense features; 1 label). Pass p draws its keys from a window that slides by ``step`` per pass, so
consecutive passes share keys and a pass that comes back to an early window needs rows trained long before.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import hgc
from hgc.runtime.data.filelist import write_file_list
from hgc.runtime.etc.keyset import write_keyset
from hgc.tools.writers import NormWriter
from tests.runtime.tiny import DENSE, add_embeddings, add_input, add_wdl_dense

BATCH = 32
WIDE_BASE = 1_000_000  # wide keys live above this, deep keys below


@dataclass(frozen=True)
class Passes:
    lists: list[str]  # one file list per pass
    keysets: list[str]  # one keyset of every key per pass (both inputs)
    wide_keysets: list[str]
    deep_keysets: list[str]
    eval_list: str
    folder: str


def _write_pass(path: str, rng: np.random.Generator, n: int, lo: int, width: int) -> np.ndarray:
    """A Norm file of n samples with keys from [lo, lo + width); returns the keys sample-major."""
    wide = WIDE_BASE + rng.integers(lo, lo + width, (n, 2))
    deep = rng.integers(lo, lo + width, (n, 2))
    keys = np.concatenate([wide, deep], axis=1).astype(np.uint32)
    dense = rng.normal(size=(n, DENSE)).astype(np.float32)
    label = ((deep.sum(axis=1) + wide[:, 0]) % 3 == 0).astype(np.float32)[:, None]
    nnz = np.tile(np.array([2, 1, 1], np.int32), (n, 1))
    with NormWriter(path, 1, DENSE, 3, True) as w:
        w.write(np.concatenate([label, dense], axis=1), nnz, keys.reshape(-1))
    return keys


def _first_seen(keys: np.ndarray) -> np.ndarray:
    _, first = np.unique(keys, return_index=True)
    return keys[np.sort(first)]


def make_passes(folder: str, windows: Sequence[int] = (0, 60, 120, 0), width: int = 100, samples: int = 3 * BATCH,
                seed: int = 3, sorted_keysets: bool = False) -> Passes:
    """One file per pass (``samples`` samples, keys from [w, w + width) for window w) with its file list and
    keysets; plus an evaluation file over the first window. Keysets are in first-seen order, or sorted."""
    rng = np.random.default_rng(seed)
    lists, keysets, wide_ks, deep_ks = [], [], [], []
    for p, lo in enumerate(windows):
        data = os.path.join(folder, f"pass{p}.data")
        keys = _write_pass(data, rng, samples, lo, width)
        lists.append(os.path.join(folder, f"file_list.{p}.txt"))
        write_file_list(lists[-1], [data])
        order = np.sort if sorted_keysets else _first_seen
        for out, part, name in ((keysets, keys, "keyset"), (wide_ks, keys[:, :2], "wide.keyset"),
                                (deep_ks, keys[:, 2:], "deep.keyset")):
            out.append(os.path.join(folder, f"file_list.{p}.{name}"))
            write_keyset(out[-1], order(part.reshape(-1)), "uint32")
    eval_data = os.path.join(folder, "eval.data")
    _write_pass(eval_data, rng, 2 * BATCH, windows[0], width)
    eval_list = os.path.join(folder, "file_list_eval.txt")
    write_file_list(eval_list, [eval_data])
    return Passes(lists, keysets, wide_ks, deep_ks, eval_list, folder)


def solver(seed: int = 1, lr: float = 0.01) -> Any:
    return hgc.CreateSolver(max_eval_batches=2, batchsize_eval=BATCH, batchsize=BATCH, lr=lr, vvgpu=[[0]],
                            repeat_dataset=False, seed=seed)


def reader(passes: Passes, keysets: Sequence[str] | None = None) -> Any:
    """The first len(keysets) pass lists as sources with those keysets (all lists for no keysets), or the
    first list alone (keysets=None: no cache)."""
    if keysets is None:
        return hgc.DataReaderParams(data_reader_type=hgc.DataReaderType_t.Norm, source=[passes.lists[0]],
                                    eval_source=passes.eval_list, check_type=hgc.Check_t.Sum, num_workers=1)
    return hgc.DataReaderParams(data_reader_type=hgc.DataReaderType_t.Norm,
                                source=list(passes.lists[:len(keysets)] if keysets else passes.lists),
                                keyset=list(keysets), eval_source=passes.eval_list, check_type=hgc.Check_t.Sum,
                                num_workers=1)


def wdl_model(passes: Passes, etc: Any = None, keysets: Sequence[str] | None = None, opt: Any = None,
              seed: int = 1) -> hgc.Model:
    """The tiny Wide&Deep model (two hash tables, 1 MB each: they hold every key)."""
    m = hgc.Model(solver(seed), reader(passes, keysets if etc is not None else None),
                  opt or hgc.CreateOptimizer(optimizer_type=hgc.Optimizer_t.Adam), etc=etc)
    add_input(m)
    add_embeddings(m)
    add_wdl_dense(m)
    m.compile()
    return m


def deep_model(passes: Passes, workspace_mb: int, etc: Any = None, keysets: Sequence[str] | None = None,
               opt: Any = None, vec: int = 256, seed: int = 1, one_hot_slots: Sequence[int] = ()) -> hgc.Model:
    """One wide-vector hash table (Adam Local: 1 MB holds 341 rows of 256) on the deep input, an MLP on it;
    with ``one_hot_slots`` a LocalizedSlotSparseEmbeddingOneHot of those slot sizes instead."""
    m = hgc.Model(solver(seed), reader(passes, keysets if etc is not None else None),
                  opt or hgc.CreateOptimizer(optimizer_type=hgc.Optimizer_t.Adam, update_type=hgc.Update_t.Local),
                  etc=etc)
    m.add(hgc.Input(label_dim=1, label_name="label", dense_dim=DENSE, dense_name="dense",
                    data_reader_sparse_param_array=[hgc.DataReaderSparseParam("wide", 2, True, 1),
                                                    hgc.DataReaderSparseParam("deep", 1, True, 2)]))
    kind = (hgc.Embedding_t.LocalizedSlotSparseEmbeddingOneHot if one_hot_slots
            else hgc.Embedding_t.DistributedSlotSparseEmbeddingHash)
    m.add(hgc.SparseEmbedding(embedding_type=kind, workspace_size_per_gpu_in_mb=workspace_mb, embedding_vec_size=vec,
                              combiner="sum", sparse_embedding_name="e_deep", bottom_name="deep",
                              slot_size_array=list(one_hot_slots)))
    dense = hgc.DenseLayer
    m.add(dense(layer_type=hgc.Layer_t.Reshape, bottom_names=["e_deep"], top_names=["r"], leading_dim=2 * vec))
    m.add(dense(layer_type=hgc.Layer_t.Concat, bottom_names=["r", "dense"], top_names=["c"]))
    m.add(dense(layer_type=hgc.Layer_t.InnerProduct, bottom_names=["c"], top_names=["fc1"], num_output=4))
    m.add(dense(layer_type=hgc.Layer_t.ReLU, bottom_names=["fc1"], top_names=["relu1"]))
    m.add(dense(layer_type=hgc.Layer_t.InnerProduct, bottom_names=["relu1"], top_names=["fc2"], num_output=1))
    m.add(dense(layer_type=hgc.Layer_t.BinaryCrossEntropyLoss, bottom_names=["fc2", "label"], top_names=["loss"]))
    m.compile()
    return m


def train_plain(m: hgc.Model, lists: Sequence[str], epochs: int = 1) -> None:
    """The reference: the low-level API over the pass lists in order, learning rates from the scheduler."""
    sched = m.get_learning_rate_scheduler()
    train_reader = m.get_data_reader_train()
    for _ in range(epochs):
        for source in lists:
            train_reader.set_source(source)
            while True:
                m.set_learning_rate(sched.get_next())
                if not m.train():
                    break


def session(m: hgc.Model) -> Any:
    return m._runtime("test")


def table_by_key(m: hgc.Model, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(keys ascending, vectors) of a training table."""
    keys, vectors = session(m).trainer.tables[name].dump()
    order = np.argsort(keys)
    return keys[order], vectors[order]


def ps_by_key(m: hgc.Model, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(keys ascending, vectors) of a table's parameter server (after writing the table back)."""
    etc = session(m).etc
    etc.write_back()
    tc = etc.tables[index]
    parts = list(tc.ps.chunks())
    keys = np.concatenate([k for k, _ in parts])
    vectors = np.concatenate([tc.codec.vectors(r) for _, r in parts])
    order = np.argsort(keys)
    return keys[order], vectors[order]


def dense_weights(m: hgc.Model) -> list[np.ndarray]:
    return [w.copy() for w in session(m).trainer.dense_weights]


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a64 - b64) / max(np.linalg.norm(b64), 1e-30))
