"""hgc.tools.adult: reading the UCI Adult CSV files, the encoder, and the Norm / Parquet outputs."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from hgc.errors import DataError
from hgc.runtime.data.filelist import read_file_list
from hgc.runtime.data.reader import DataReader
from hgc.tools.adult import (
    AGE_BOUNDARIES,
    CATEGORICAL,
    CONTINUOUS,
    DEFAULT_CROSSES,
    AdultEncoder,
    adult_files,
    age_bucket,
    convert_adult,
    read_adult,
)

LEVELS = {
    "workclass": ["Private", "Self-emp-not-inc", "State-gov", "?"],
    "education": ["Bachelors", "HS-grad", "Masters", "11th", "Doctorate"],
    "marital_status": ["Never-married", "Married-civ-spouse", "Divorced"],
    "occupation": ["Adm-clerical", "Exec-managerial", "Craft-repair", "?"],
    "relationship": ["Husband", "Not-in-family", "Own-child"],
    "race": ["White", "Black", "Asian-Pac-Islander"],
    "sex": ["Male", "Female"],
    "native_country": ["United-States", "Mexico", "India", "Holand-Netherlands"],
}


def _rows(rng: np.random.Generator, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        r = {c: str(rng.choice(v, p=np.r_[0.7, np.full(len(v) - 1, 0.3 / (len(v) - 1))])) for c, v in LEVELS.items()}
        r.update(age=int(rng.integers(17, 91)), fnlwgt=int(rng.integers(12000, 1500000)),
                 education_num=int(rng.integers(1, 17)), capital_gain=int(rng.choice([0, 0, 0, 2174, 99999])),
                 capital_loss=int(rng.choice([0, 0, 1902])), hours_per_week=int(rng.integers(1, 100)),
                 income=str(rng.choice(["<=50K", ">50K"])))
        rows.append(r)
    return rows


def _write(path: Path, rows: list[dict], test_style: bool) -> Path:
    order = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
             "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country"]
    lines = ["|1x3 Cross validator"] if test_style else []
    for r in rows:
        lines.append(", ".join(str(r[c]) for c in order) + ", " + r["income"] + ("." if test_style else ""))
    path.write_text("\n".join(lines) + "\n\n")
    return path


@pytest.fixture
def csvs(tmp_path):
    rng = np.random.default_rng(2026)
    train, test = _rows(rng, 97), _rows(rng, 41)
    test[0]["native_country"] = "Never-seen-land"
    return (_write(tmp_path / "adult.data", train, False), _write(tmp_path / "adult.test", test, True), train, test)


def test_read_adult(csvs):
    train_path, test_path, train, test = csvs
    t = read_adult(train_path)
    assert len(t) == 97
    assert t.columns["age"].tolist() == [r["age"] for r in train]
    assert t.columns["occupation"].tolist() == [r["occupation"] for r in train]
    assert t.label.tolist() == [float(r["income"] == ">50K") for r in train]
    s = read_adult(test_path)  # header line and trailing '.' of the test file
    assert len(s) == 41 and s.label.tolist() == [float(r["income"] == ">50K") for r in test]


@pytest.mark.parametrize("line, rule", [
    ("39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, White, Male, 2174, 0, 40, US, <=50K",
     "expected 15"),
    (("39, State-gov, 77x16, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, "
      "40, United-States, <=50K"), "column fnlwgt must be an integer"),
    (("39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, "
      "40, United-States, maybe"), "the label must be"),
])
def test_read_adult_bad_rows(tmp_path, line, rule):
    good = ("50, Private, 83311, Bachelors, 13, Married-civ-spouse, Exec-managerial, Husband, White, Male, 0, 0, "
            "13, United-States, >50K")
    p = tmp_path / "bad.csv"
    p.write_text(good + "\n" + line + "\n")
    with pytest.raises(DataError, match=rule) as e:
        read_adult(p)
    assert "line 2" in str(e.value) and str(p) in str(e.value)


def test_read_adult_missing_and_empty(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_adult(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("\n\n")
    with pytest.raises(DataError, match="no data rows"):
        read_adult(tmp_path / "empty.csv")
    with pytest.raises(FileNotFoundError, match="adult.data"):
        adult_files(tmp_path)


def test_age_bucket():
    ages = np.array([17, 18, 24, 25, 64, 65, 90])
    assert age_bucket(ages).tolist() == [0, 1, 1, 2, 9, 10, 10]
    assert age_bucket(np.array(AGE_BOUNDARIES)).tolist() == list(range(1, len(AGE_BOUNDARIES) + 1))


def test_encoder(csvs):
    train_path, test_path, train, _ = csvs
    tr, te = read_adult(train_path), read_adult(test_path)
    enc = AdultEncoder(min_count=2).fit(tr)
    # codes by decreasing training frequency from 1; values seen fewer than min_count times -> 0
    occ = [r["occupation"] for r in train]
    counts = {v: occ.count(v) for v in set(occ)}
    voc = enc.vocab["occupation"]
    assert sorted(voc.values()) == list(range(1, len(voc) + 1))
    assert all(counts[v] >= 2 for v in voc) and all(v in voc for v in counts if counts[v] >= 2)
    ranked = sorted(voc, key=voc.get)
    assert [counts[v] for v in ranked] == sorted((counts[v] for v in ranked), reverse=True)
    label, dense, wide, deep = enc.transform(tr)
    assert label.shape == (97, 1) and dense.shape == (97, len(CONTINUOUS)) and dense.dtype == np.float32
    np.testing.assert_allclose(dense.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(dense.std(axis=0), 1.0, rtol=1e-4)
    raw_gain = np.log1p(tr.columns["capital_gain"].astype(np.float64))
    expect = (raw_gain - raw_gain.mean()) / raw_gain.std()
    got = dense[:, CONTINUOUS.index("capital_gain")].astype(np.float64)
    assert np.linalg.norm(got - expect) / np.linalg.norm(expect) < 1e-6
    # wide keys: each feature in its own range, in wide_features order
    sizes = [enc.size(f) for f in enc.wide_features]
    lo = np.cumsum([0] + sizes[:-1])
    assert wide.shape == (97, len(CATEGORICAL) + 1 + len(DEFAULT_CROSSES))
    assert np.all(wide >= lo) and np.all(wide < lo + np.array(sizes))
    assert enc.wide_size == sum(sizes)
    assert deep.shape == (97, len(CATEGORICAL) + 1)
    assert np.all(deep < np.array(enc.slot_size_array[1:])) and np.all(deep >= 0)
    # the test split uses the training vocabulary; unseen values get code 0
    _, dense_te, _, deep_te = enc.transform(te)
    assert deep_te[0, CATEGORICAL.index("native_country")] == 0
    age_tr, age_te = (t.columns["age"].astype(np.float64) for t in (tr, te))
    expect = (age_te - age_tr.mean()) / age_tr.std()  # training statistics, not the test split's own
    got = dense_te[:, CONTINUOUS.index("age")].astype(np.float64)
    assert np.linalg.norm(got - expect) / np.linalg.norm(expect) < 1e-6


def test_encoder_arguments(csvs):
    with pytest.raises(ValueError, match="min_count"):
        AdultEncoder(min_count=0)
    with pytest.raises(ValueError, match="crosses"):
        AdultEncoder(crosses=(("education", "salary"),))
    with pytest.raises(ValueError, match="crosses"):
        AdultEncoder(crosses=(("education",),))
    with pytest.raises(ValueError, match="fit"):
        AdultEncoder().transform(read_adult(csvs[0]))
    with pytest.raises(ValueError, match="format"):
        convert_adult(csvs[0], csvs[1], "/tmp/never", "Raw")
    with pytest.raises(ValueError, match="samples_per_file"):
        convert_adult(csvs[0], csvs[1], "/tmp/never", samples_per_file=-1)


def _read_all(conv, split: str) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    reader = DataReader(conv.format, conv.sources[split], 16, label_dims=[1], dense_dim=conv.dense_dim,
                        sparse=[(slots, [nnz] * slots, fixed) for _, nnz, fixed, slots in conv.sparse_params()],
                        key_dtype="int64" if conv.i64_keys else "uint32",
                        check_type="Sum" if conv.format == "Norm" else "Non",
                        slot_size_array=conv.slot_size_array, repeat=False, num_workers=1)
    labels, dense, keys = [], [], [[] for _ in conv.sparse_params()]
    while (b := reader.read()) is not None:
        labels.append(b.label[:b.size])
        dense.append(b.dense[:b.size])
        for i, sb in enumerate(b.sparse):
            k = sb.keys[:sb.row_offsets[b.size * sb.slot_num]].astype(np.int64)
            keys[i].append(k.reshape(b.size, -1))
    return np.concatenate(labels), np.concatenate(dense), [np.concatenate(k) for k in keys]


def test_norm_and_parquet_read_back_identically(csvs, tmp_path):
    train_path, test_path, train, test = csvs
    norm = convert_adult(train_path, test_path, tmp_path / "norm", "Norm", samples_per_file=30)
    pq = convert_adult(train_path, test_path, tmp_path / "pq", "Parquet", samples_per_file=30)
    assert norm.num_samples == pq.num_samples == {"train": 97, "test": 41}
    assert len(read_file_list(norm.sources["train"])) == 4 and len(read_file_list(pq.sources["test"])) == 2
    assert os.path.isfile(tmp_path / "pq" / "train" / "_metadata.json")
    assert norm.slot_size_array == pq.slot_size_array and not norm.i64_keys and pq.i64_keys
    assert norm.sparse_params() == [("wide", 12, True, 1), ("deep", 1, True, 9)]
    enc = AdultEncoder().fit(read_adult(train_path))
    for split, path, rows in (("train", train_path, train), ("test", test_path, test)):
        ln, dn, kn = _read_all(norm, split)
        lp, dp, kp = _read_all(pq, split)
        label, dense, wide, deep = enc.transform(read_adult(path))
        assert ln.shape[0] == len(rows)
        for a, b in ((ln, lp), (dn, dp), (kn[0], kp[0]), (kn[1], kp[1])):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ln, label)
        np.testing.assert_array_equal(dn, dense)
        np.testing.assert_array_equal(kn[0], wide)  # the wide slot comes first: no shift
        np.testing.assert_array_equal(kn[1], deep + np.cumsum(norm.slot_size_array)[:-1])
    assert int(kn[1].max()) < norm.vocabulary_size


def test_real_adult_files():
    """The shared UCI files (skipped when absent) convert to the documented row counts and positive rates."""
    shared = os.environ.get("HGC_SHARED_DIR")
    base = Path(shared) if shared else Path(__file__).resolve().parents[2].parent / "shared"
    try:
        train, test = adult_files(base / "data" / "adult")
    except FileNotFoundError as e:
        pytest.skip(str(e))
    tr, te = read_adult(train), read_adult(test)
    assert (len(tr), len(te)) == (32561, 16281)
    assert abs(float(tr.label.mean()) - 0.2408) < 1e-3 and abs(float(te.label.mean()) - 0.2362) < 1e-3
    enc = AdultEncoder().fit(tr)
    assert enc.size("sex") == 3 and enc.size("race") == 6  # 2 and 5 categories + the out-of-vocabulary code
