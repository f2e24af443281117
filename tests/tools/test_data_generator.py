import inspect
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from hgc.runtime.data.reader import DataReader
from hgc.tools import DataGenerator, DataGeneratorParams
from hgc.tools.data_generator import sample_keys
from tests.runtime.data import spec

SIZES = [30, 11, 50, 7]


def test_documented_defaults_and_positional_order():
    sig = inspect.signature(DataGeneratorParams)
    names = list(sig.parameters)
    assert names[:20] == [
        "format",
        "label_dim",
        "dense_dim",
        "num_slot",
        "i64_input_key",
        "source",
        "eval_source",
        "slot_size_array",
        "nnz_array",
        "check_type",
        "dist_type",
        "power_law_type",
        "alpha",
        "num_files",
        "eval_num_files",
        "num_samples_per_file",
        "num_samples",
        "eval_num_samples",
        "float_label_dense",
        "num_threads",
    ]
    p = DataGeneratorParams("Norm", 1, 13, 2, False, "a/l.txt", "a/e.txt", [3, 4])
    assert (p.check_type, p.dist_type, p.power_law_type, p.alpha) == ("Sum", "PowerLaw", "Specific", 1.2)
    assert (p.num_files, p.eval_num_files, p.num_samples_per_file) == (128, 32, 40960)
    assert (p.num_samples, p.eval_num_samples, p.float_label_dense, p.num_threads) == (
        5242880,
        1310720,
        False,
        1,
    )
    assert p.nnz_array == [1, 1] and p.learnable is False and p.seed is None


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"slot_size_array": [3]}, "slot_size_array has 1 entries"),
        ({"nnz_array": [1, 2, 3]}, "nnz_array has 3 entries"),
        ({"alpha": 1.0}, "alpha=1.0"),
        ({"alpha": -0.5}, "alpha=-0.5"),
        ({"num_threads": 0}, "num_threads=0"),
        ({"format": "Csv"}, "data_reader_type='Csv'"),
        ({"dist_type": "Zipf"}, "dist_type='Zipf'"),
        ({"check_type": "Crc"}, "check_type='Crc'"),
        ({"format": "Raw", "i64_input_key": True}, "32-bit"),
        ({"num_files": 0}, "num_files=0"),
    ],
)
def test_validation(kw, match):
    args = {
        "format": "Norm",
        "label_dim": 1,
        "dense_dim": 2,
        "num_slot": 2,
        "i64_input_key": False,
        "source": "a/l.txt",
        "eval_source": "a/e.txt",
        "slot_size_array": [3, 4],
    }
    args.update(kw)
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace("[", r"\[")):
        DataGeneratorParams(**args)
    with pytest.raises(TypeError, match="num_slots"):
        DataGeneratorParams(**{**args, "num_slots": 2})


def _params(tmp_path, fmt, **kw):
    base = {
        "label_dim": 2,
        "dense_dim": 3,
        "num_slot": 4,
        "i64_input_key": False,
        "slot_size_array": SIZES,
        "nnz_array": [1, 3, 2, 1],
        "num_files": 3,
        "eval_num_files": 1,
        "num_samples_per_file": 37,
        "num_samples": 53,
        "eval_num_samples": 19,
        "seed": 5,
    }
    base.update(kw)
    if fmt == "Raw":
        src, ev = str(tmp_path / "raw" / "train.bin"), str(tmp_path / "raw" / "test.bin")
    else:
        src, ev = str(tmp_path / fmt / "file_list.txt"), str(tmp_path / fmt / "file_list_test.txt")
    return DataGeneratorParams(fmt, source=src, eval_source=ev, **base)


@pytest.mark.parametrize("check", ["Sum", "Non"])
@pytest.mark.parametrize("i64", [False, True])
def test_norm_round_trip(tmp_path, check, i64):
    p = _params(tmp_path, "Norm", check_type=check, i64_input_key=i64, num_threads=2)
    DataGenerator(p).generate()
    lines = Path(p.source).read_text().split()
    assert lines[0] == "3" and lines[1].endswith("train/gen_0.data") and os.path.exists(lines[1])
    want = []
    offs = np.concatenate([[0], np.cumsum(SIZES)[:-1]])
    for f in lines[1:]:
        hdr, samples = spec.parse_norm(Path(f).read_bytes(), i64)
        assert hdr[:5] == ((1 if check == "Sum" else 0), 37, 2, 3, 4)
        for lab, den, slots in samples:
            assert [len(k) for k in slots] == [1, 3, 2, 1]
            assert all(offs[s] <= k < offs[s] + SIZES[s] for s in range(4) for k in slots[s])
            assert all(0 <= v < 1 for v in lab + den)
        want += samples
    r = DataReader(
        "Norm",
        p.source,
        16,
        label_dims=[1, 1],
        dense_dim=3,
        sparse=[(1, 1, True), (3, [3, 2, 1], True)],
        key_dtype="int64" if i64 else "uint32",
        check_type=check,
        repeat=False,
        num_workers=1,
        slot_size_array=SIZES,
    )
    spec.assert_same_samples(spec.batches_to_samples(list(r), [1, 3], 2), want)
    assert Path(p.eval_source).read_text().split()[1].endswith("val/gen_0.data")


def test_norm_skips_existing_list_and_is_reproducible(tmp_path):
    p = _params(tmp_path, "Norm")
    DataGenerator(p).generate()
    first = Path(str(tmp_path / "Norm" / "train" / "gen_1.data")).read_bytes()
    os.remove(p.source)
    os.remove(p.eval_source)
    DataGenerator(_params(tmp_path, "Norm", num_threads=3)).generate()
    assert Path(str(tmp_path / "Norm" / "train" / "gen_1.data")).read_bytes() == first
    os.remove(str(tmp_path / "Norm" / "train" / "gen_1.data"))
    DataGenerator(p).generate()  # the file list exists: nothing is generated again
    assert not os.path.exists(str(tmp_path / "Norm" / "train" / "gen_1.data"))


def test_parquet_round_trip(tmp_path):
    p = _params(tmp_path, "Parquet", i64_input_key=True)
    DataGenerator(p).generate()
    files = Path(p.source).read_text().split()[1:]
    folder = os.path.dirname(files[0])
    assert os.path.exists(os.path.join(folder, "_metadata.json"))
    want = []
    offs = np.concatenate([[0], np.cumsum(SIZES)[:-1]])
    for f in files:
        t = pq.read_table(f).to_pydict()
        assert list(t) == ["label0", "label1", "C2", "C3", "C4", "C5", "C6", "C7", "C8"]
        for i in range(37):
            slots = []
            for s, name in enumerate(["C5", "C6", "C7", "C8"]):
                v = t[name][i]
                v = v if isinstance(v, list) else [v]
                assert 1 <= len(v) <= [1, 3, 2, 1][s] and all(0 <= k < SIZES[s] for k in v)
                slots.append([int(k + offs[s]) for k in v])
            want.append(([t["label0"][i], t["label1"][i]], [t[c][i] for c in ("C2", "C3", "C4")], slots))
    r = DataReader(
        "Parquet",
        p.source,
        10,
        label_dims=2,
        dense_dim=3,
        sparse=[(4, [1, 3, 2, 1], False)],
        key_dtype="int64",
        slot_size_array=SIZES,
        repeat=False,
        num_workers=2,
    )
    got = spec.batches_to_samples(list(r), [4], 2)
    # workers 0 and 1 interleave batches: compare as multisets of samples
    key = lambda s: (tuple(s[0]), tuple(s[1]), tuple(map(tuple, s[2])))
    assert sorted(map(key, got)) == sorted(
        map(key, [(list(map(float, np.float32(a))), list(map(float, np.float32(b))), c) for a, b, c in want])
    )


@pytest.mark.parametrize("floats", [False, True])
def test_raw_round_trip(tmp_path, floats):
    p = _params(tmp_path, "Raw", label_dim=1, nnz_array=[1, 1, 1, 1], float_label_dense=floats)
    DataGenerator(p).generate()
    assert os.path.getsize(p.source) == 53 * 4 * (1 + 3 + 4) and os.path.getsize(p.eval_source) == 19 * 32
    r = DataReader(
        "Raw",
        p.source,
        8,
        label_dims=1,
        dense_dim=3,
        sparse=[(4, 1, True)],
        num_samples=53,
        float_label_dense=floats,
        repeat=False,
        slot_size_array=SIZES,
    )
    batches = list(r)
    labels = np.concatenate([b.label[: b.size, 0] for b in batches])
    assert np.array_equal(labels, np.arange(53) % 2)
    dense = np.concatenate([b.dense[: b.size] for b in batches])
    want = (
        np.arange(3, dtype=np.float32) if floats else np.log(np.arange(3, dtype=np.float32) + np.float32(1))
    )
    assert np.array_equal(dense, np.broadcast_to(want, (53, 3)))


@pytest.mark.parametrize("alpha,size", [(1.2, 1000), (0.9, 1000), (1.3, 50)])
def test_power_law_matches_its_distribution(alpha, size):
    rng = np.random.default_rng(0)
    keys = sample_keys(rng, size, 200000, True, alpha)
    assert keys.min() >= 0 and keys.max() < size
    e = 1 - alpha
    for cut in (1, 10, size // 3):
        theory = ((cut + 1) ** e - 1) / ((size + 1) ** e - 1)
        assert abs(np.mean(keys < cut) - theory) < 0.01
    uni = sample_keys(rng, size, 200000, False, alpha)
    assert abs(np.mean(uni < 10) - 10 / size) < 0.01


def test_power_law_types_and_uniform_generation(tmp_path):
    for plt, dist in (("Long", "PowerLaw"), ("Short", "PowerLaw"), ("Specific", "Uniform")):
        p = _params(
            tmp_path / plt,
            "Norm",
            power_law_type=plt,
            dist_type=dist,
            num_samples_per_file=400,
            slot_size_array=[1000] * 4,
            nnz_array=[1] * 4,
            num_files=1,
        )
        assert p.effective_alpha == {"Long": 0.9, "Short": 1.3, "Specific": 1.2}[plt]
        DataGenerator(p).generate()
        _, samples = spec.parse_norm(Path(open(p.source).read().split()[1]).read_bytes(), False)
        first_slot = np.array([s[2][0][0] for s in samples])
        share = np.mean(first_slot < 100)
        assert (share > 0.5) if dist == "PowerLaw" else (share < 0.2)


def _features(batches, vocab):
    import scipy.sparse as sp

    rows, cols, dense, labels = [], [], [], []
    base = 0
    for b in batches:
        sb = b.sparse[0]
        per_row = np.diff(sb.row_offsets).reshape(b.n, -1).sum(axis=1)
        r = np.repeat(np.arange(b.n), per_row)
        keep = r < b.size
        rows.append(r[keep] + base)
        cols.append(sb.keys[keep].astype(np.int64))
        dense.append(b.dense[: b.size])
        labels.append(b.label[: b.size, 0])
        base += b.size
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    onehot = sp.csr_matrix((np.ones(rows.shape[0]), (rows, cols)), shape=(base, vocab))
    return sp.hstack([onehot, sp.csr_matrix(np.concatenate(dense))]).tocsr(), np.concatenate(labels)


@pytest.mark.parametrize("learnable", [True, False])
def test_learnable_labels_are_predictable(tmp_path, learnable):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    sizes = [40] * 8
    p = DataGeneratorParams(
        "Norm",
        1,
        4,
        8,
        False,
        str(tmp_path / "file_list.txt"),
        str(tmp_path / "eval.txt"),
        sizes,
        num_files=4,
        eval_num_files=1,
        num_samples_per_file=5000,
        learnable=learnable,
        seed=3,
    )
    DataGenerator(p).generate()
    kw = {"label_dims": 1, "dense_dim": 4, "sparse": [(8, 1, True)], "repeat": False, "num_workers": 2}
    X, y = _features(list(DataReader("Norm", p.source, 1000, **kw)), sum(sizes))
    Xe, ye = _features(list(DataReader("Norm", p.eval_source, 1000, **kw)), sum(sizes))
    assert set(np.unique(y)) <= {0.0, 1.0} if learnable else True
    model = LogisticRegression(C=1.0, max_iter=300).fit(X, y > 0.5)
    auc = roc_auc_score(ye > 0.5, model.decision_function(Xe))
    if learnable:
        assert auc > 0.75
    else:
        assert auc < 0.6


def test_accepts_enum_members(tmp_path):
    import enum

    class DataReaderType_t(enum.Enum):
        Norm = 0
        Raw = 1
        Parquet = 2

    class Check_t(enum.Enum):
        Sum = 0
        Non = 1

    class Distribution_t(enum.Enum):
        PowerLaw = 0
        Uniform = 1

    class PowerLaw_t(enum.Enum):
        Long = 0
        Medium = 1
        Short = 2
        Specific = 3

    p = DataGeneratorParams(
        DataReaderType_t.Norm,
        1,
        1,
        2,
        False,
        str(tmp_path / "l.txt"),
        str(tmp_path / "e.txt"),
        [5, 6],
        check_type=Check_t.Non,
        dist_type=Distribution_t.PowerLaw,
        power_law_type=PowerLaw_t.Medium,
        num_files=1,
        eval_num_files=1,
        num_samples_per_file=4,
        seed=0,
    )
    assert p.effective_alpha == 1.1 and p.format is DataReaderType_t.Norm
    DataGenerator(p).generate()
    hdr, samples = spec.parse_norm(Path(Path(p.source).read_text().split()[1]).read_bytes(), False)
    assert hdr[0] == 0 and len(samples) == 4
