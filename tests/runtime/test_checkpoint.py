from __future__ import annotations

import json
import os
import struct
from typing import BinaryIO

import numpy as np
import pytest

import hgc.runtime.checkpoint as ck
from hgc.errors import DataError


def f32(values: np.ndarray) -> bytes:
    return b"".join(struct.pack("<f", float(v)) for v in np.asarray(values).reshape(-1))


def test_snapshot_names() -> None:
    n = ck.snapshot_names("wdl", 4000, 2)
    assert (n.dense, n.dense_opt, n.ntp) == ("wdl_dense_4000.model", "wdl_opt_dense_4000.model",
                                            "wdl_dense_4000.model.ntp.json")
    assert n.sparse == ("wdl0_sparse_4000.model", "wdl1_sparse_4000.model")
    assert n.sparse_opt == ("wdl0_opt_sparse_4000.model", "wdl1_opt_sparse_4000.model")
    e = ck.snapshot_names("", 1000, 1)
    assert (e.dense, e.sparse[0], e.sparse_opt[0]) == ("_dense_1000.model", "0_sparse_1000.model",
                                                       "0_opt_sparse_1000.model")


def test_dense_model_is_the_raw_fp32_concatenation(tmp_path: str) -> None:
    rng = np.random.default_rng(1)
    ws = [rng.uniform(-1, 1, size=(7, 3)), rng.uniform(-1, 1, size=(1, 3)).astype(np.float32),
          rng.uniform(size=5)]
    path = os.path.join(tmp_path, "m_dense_0.model")
    ck.write_dense_model(path, ws)
    with open(path, "rb") as f:
        assert f.read() == b"".join(f32(w) for w in ws)
    back = ck.read_dense_model(path, [w.shape for w in ws])
    for a, b in zip(back, ws):
        assert a.dtype == np.float32 and a.shape == b.shape
        np.testing.assert_array_equal(a, b.astype(np.float32))
    with pytest.raises(DataError, match="m_dense_0.model.*116 bytes.*120 bytes"):
        ck.read_dense_model(path, [(7, 3), (1, 3), (6,)])


def test_dense_optimizer_file_pads_each_kind_to_256_bytes(tmp_path: str) -> None:
    rng = np.random.default_rng(2)
    shapes = [(5, 6), (7,)]  # N = 37 values: 148 bytes per kind, 108 bytes of padding after m
    m = [rng.uniform(size=s).astype(np.float32) for s in shapes]
    v = [rng.uniform(size=s).astype(np.float32) for s in shapes]
    path = os.path.join(tmp_path, "_opt_dense_5.model")
    ck.write_dense_opt(path, [m, v])
    expect = f32(np.concatenate([x.reshape(-1) for x in m])) + bytes(108) + f32(np.concatenate(
        [x.reshape(-1) for x in v]))
    with open(path, "rb") as f:
        assert f.read() == expect
    assert ck.dense_opt_size(37, 2) == 404 and ck.dense_opt_stride(64) == 256
    back = ck.read_dense_opt(path, 2, shapes)
    for kind, ref in zip(back, (m, v)):
        for a, b in zip(kind, ref):
            np.testing.assert_array_equal(a, b)
    with open(path, "ab") as f:  # a dump that also covers the padding after the last kind still reads
        f.write(bytes(108))
    np.testing.assert_array_equal(ck.read_dense_opt(path, 2, shapes)[1][1], v[1])
    with pytest.raises(DataError, match="_opt_dense_5.model.*512 bytes"):
        ck.read_dense_opt(path, 3, shapes)
    sgd = os.path.join(tmp_path, "sgd_opt_dense_5.model")
    ck.write_dense_opt(sgd, [])
    assert os.path.getsize(sgd) == 0 and ck.read_dense_opt(sgd, 0, shapes) == []
    with pytest.raises(ValueError, match="same weights"):
        ck.write_dense_opt(sgd, [m, v[:1]])


def test_ntp_json(tmp_path: str) -> None:
    path = os.path.join(tmp_path, "x_dense_0.model.ntp.json")
    stats = [(np.array([0.5, -1.25], np.float32), np.array([2.0, 0.1], np.float32)),
             (np.array([3.0]), np.array([4.0]))]
    ck.write_ntp(path, stats)
    with open(path) as f:
        text = f.read()
    tenth = repr(float(np.float32(0.1)))
    assert text == ('{"layers":[{"type":"BatchNorm","mean":[0.5,-1.25],"var":[2.0,' + tenth + ']},'
                    '{"type":"BatchNorm","mean":[3.0],"var":[4.0]}]}')
    back = ck.read_ntp(path)
    np.testing.assert_array_equal(back[0][1], stats[0][1])
    with open(path, "w") as f:
        json.dump({"layers": [{"type": "BatchNorm", "mean": [1, 2], "var": [1]}]}, f)
    with pytest.raises(DataError, match="ntp.json.*mean has 2 values but var has 1"):
        ck.read_ntp(path)


def test_sparse_model_folder(tmp_path: str) -> None:
    rng = np.random.default_rng(3)
    keys = np.array([7, -2, 2**40, 0, 3], np.int64)
    vecs = rng.uniform(size=(5, 3)).astype(np.float32)
    slots = np.array([0, 1, 1, 2, 0], np.uint64)
    path = os.path.join(tmp_path, "wdl0_sparse_10.model")
    ck.write_sparse_model(path, keys, vecs, slots)
    assert sorted(os.listdir(path)) == ["emb_vector", "key", "slot_id"]
    with open(os.path.join(path, "key"), "rb") as f:
        assert f.read() == struct.pack("<5q", *keys.tolist())
    with open(os.path.join(path, "emb_vector"), "rb") as f:
        assert f.read() == f32(vecs)
    with open(os.path.join(path, "slot_id"), "rb") as f:
        assert f.read() == struct.pack("<5Q", *slots.tolist())
    k, v, s = ck.read_sparse_model(path, 3)
    np.testing.assert_array_equal(k, keys)
    np.testing.assert_array_equal(v, vecs)
    np.testing.assert_array_equal(s, slots)
    dist = os.path.join(tmp_path, "wdl1_sparse_10.model")
    ck.write_sparse_model(dist, keys.astype(np.uint32)[:2], vecs[:2])
    assert sorted(os.listdir(dist)) == ["emb_vector", "key"]
    assert ck.read_sparse_model(dist, 3)[2] is None
    with pytest.raises(DataError, match=r"emb_vector.*rows of keys and embeddings are not consistent"):
        ck.read_sparse_model(dist, 4)
    with open(os.path.join(path, "slot_id"), "ab") as f:
        f.write(b"\0" * 8)
    with pytest.raises(DataError, match="slot_id.*not consistent"):
        ck.read_sparse_model(path, 3)
    with pytest.raises(DataError, match="folder not found"):
        ck.read_sparse_model(os.path.join(tmp_path, "nothing"), 3)
    with pytest.raises(ValueError, match="not consistent"):
        ck.write_sparse_model(path, keys, vecs[:4])


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_sparse_optimizer_file(tmp_path: str, dtype: type) -> None:
    rng = np.random.default_rng(4)
    m, v = (rng.uniform(size=(11, 3)).astype(dtype) for _ in range(2))
    path = os.path.join(tmp_path, "0_opt_sparse_3.model")
    ck.write_sparse_opt(path, [m, v])
    fmt = "<66f" if dtype == np.float32 else "<66e"
    with open(path, "rb") as f:
        assert f.read() == struct.pack(fmt, *np.concatenate([m.reshape(-1), v.reshape(-1)]).tolist())
    back = ck.read_sparse_opt(path, 2, 11, 3, dtype)
    np.testing.assert_array_equal(back[1], v)
    with pytest.raises(DataError, match="0_opt_sparse_3.model"):
        ck.read_sparse_opt(path, 2, 12, 3, dtype)


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def leftovers(folder: str) -> list[str]:
    return [n for n in os.listdir(folder) if n.startswith(".")]


def test_a_failed_write_leaves_the_previous_file(tmp_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = os.path.join(tmp_path, "a_dense_0.model")
    old = [np.arange(6, dtype=np.float32)]
    ck.write_dense_model(path, old)
    before = read_bytes(path)
    real, calls = ck._write_array, []

    def fail_second(f: BinaryIO, arr: np.ndarray, dtype: str) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        real(f, arr, dtype)

    monkeypatch.setattr(ck, "_write_array", fail_second)
    with pytest.raises(OSError, match="disk full"):
        ck.write_dense_model(path, [np.ones(100), np.ones(100)])
    assert read_bytes(path) == before and leftovers(tmp_path) == []


def test_a_failed_folder_write_leaves_the_previous_folder(tmp_path: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = os.path.join(tmp_path, "a0_sparse_0.model")
    ck.write_sparse_model(path, np.array([1, 2]), np.ones((2, 4)), np.array([0, 1]))
    snapshot = {n: read_bytes(os.path.join(path, n)) for n in os.listdir(path)}
    real, calls = ck._write_array, []

    def fail_second(f: BinaryIO, arr: np.ndarray, dtype: str) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("interrupted")
        real(f, arr, dtype)

    monkeypatch.setattr(ck, "_write_array", fail_second)
    with pytest.raises(OSError, match="interrupted"):
        ck.write_sparse_model(path, np.array([5, 6, 7]), np.zeros((3, 4)), np.array([0, 0, 0]))
    assert {n: read_bytes(os.path.join(path, n)) for n in os.listdir(path)} == snapshot
    assert leftovers(tmp_path) == []
    monkeypatch.setattr(ck, "_write_array", real)
    ck.write_sparse_model(path, np.array([5, 6, 7]), np.zeros((3, 4)))  # a good write replaces the folder
    assert sorted(os.listdir(path)) == ["emb_vector", "key"] and leftovers(tmp_path) == []
    np.testing.assert_array_equal(ck.read_sparse_model(path, 4)[0], [5, 6, 7])


def test_all_or_nothing_puts_a_snapshot_in_place_whole(tmp_path) -> None:
    dense, folder = str(tmp_path / "p_dense_1.model"), str(tmp_path / "p0_sparse_1.model")
    keys, vectors = np.array([3, 9], np.int64), np.random.default_rng(4).random((2, 3), np.float32)
    with ck.all_or_nothing():
        ck.write_dense_model(dense, [np.ones(5, np.float32)])
        ck.write_sparse_model(folder, keys, vectors)
        assert not os.path.exists(dense) and not os.path.exists(folder)  # nothing in place before the end
    assert np.array_equal(ck.read_dense_model(dense, [(5,)])[0], np.ones(5))
    with pytest.raises(RuntimeError, match="stopped"), ck.all_or_nothing():
        ck.write_dense_model(dense, [np.zeros(5, np.float32)])
        ck.write_sparse_model(folder, keys[:1], vectors[:1])
        raise RuntimeError("stopped")
    assert np.array_equal(ck.read_dense_model(dense, [(5,)])[0], np.ones(5))
    assert np.array_equal(ck.read_sparse_model(folder, 3)[0], keys)
    assert sorted(os.listdir(tmp_path)) == ["p0_sparse_1.model", "p_dense_1.model"]  # no temporaries left
