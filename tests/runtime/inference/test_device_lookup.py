"""The cuda embedding layer's host side on a stand-in device (NumPy arrays, a NumPy ``combine``): which keys
it resolves, what it hands the kernel, and that it refuses to train. The kernel itself runs on the GPU in
tests/gpu/test_inference.py."""
from __future__ import annotations

import types

import numpy as np
import pytest

from hgc.errors import TrainingError
from hgc.runtime.cuda.staging import DeviceSparse
from hgc.runtime.data.batch import SparseBatch
from hgc.runtime.inference import device_lookup
from hgc.runtime.inference.lookup import EmbeddingLookup, TableSpec
from tests.runtime.inference.test_lookup import random_batch, table

FAKE_CUPY = types.SimpleNamespace(asnumpy=np.array, asarray=np.asarray, empty=np.empty)


def fake_kernels(spec_name: str, fn: str):
    assert (spec_name, fn) == ("emb_spec", "combine"), (spec_name, fn)

    def combine(grid, block, args):
        offsets, rows, nseg, table, out = args
        for s in range(int(nseg)):
            seg = rows[offsets[s]:offsets[s + 1]]
            out[s] = table[seg].sum(axis=0) if seg.size else 0.0
    return combine


@pytest.fixture
def fake_device(monkeypatch):
    monkeypatch.setattr(device_lookup, "cupy", lambda: FAKE_CUPY)


def test_forward_device_resolves_on_the_host_and_combines(fake_device):
    rng = np.random.default_rng(8)
    sparse = random_batch(rng, 9, 2, 3, 30)
    rows, source = table(np.arange(0, 30, 3), 4, default=0.2)
    lookup = EmbeddingLookup(TableSpec("e", 4, "sum", False), source)
    emb = device_lookup.DeviceLookupEmbedding(lookup)
    ds = DeviceSparse(np.concatenate([sparse.keys.astype(np.int64), np.full(5, -1, np.int64)]),  # spare room
                      sparse.row_offsets, 18, 2, int(sparse.row_offsets[-1]))
    with pytest.raises(RuntimeError, match="bind\\(\\) was not called"):
        emb.forward_device(ds, False)
    emb.bind(types.SimpleNamespace(spec="emb_spec", vec_size=4, out_dtype="float32"), fake_kernels)
    out = emb.forward_device(ds, False)
    want, _ = lookup.forward(sparse, training=False)
    assert out.shape == (18, 4) and np.allclose(out, want.reshape(18, 4), rtol=1e-6, atol=1e-7)
    with pytest.raises(TrainingError, match="does not train"):
        emb.forward_device(ds, True)
    for call in (lambda: emb.backward(out), lambda: emb.backward_update(out), lambda: emb.update(0.1),
                 emb.dump):
        with pytest.raises(TrainingError, match="inference model"):
            call()
    with pytest.raises(ValueError, match="the lowered plan has vectors of 8 values, the parameter server 4"):
        emb.bind(types.SimpleNamespace(spec="emb_spec", vec_size=8, out_dtype="float32"), fake_kernels)


def test_forward_device_without_keys(fake_device):
    _, source = table(np.arange(3), 2, default=0.0)
    emb = device_lookup.DeviceLookupEmbedding(EmbeddingLookup(TableSpec("e", 2, "mean", False), source))
    emb.bind(types.SimpleNamespace(spec="emb_spec", vec_size=2, out_dtype="float32"), fake_kernels)
    empty = SparseBatch(np.zeros(7, np.int64), np.zeros(0, np.int64), 3)
    out = emb.forward_device(DeviceSparse(np.zeros(1, np.int64), empty.row_offsets, 6, 3, 0), False)
    assert out.shape == (6, 2) and not out.any()
