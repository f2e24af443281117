import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hgc.errors import DataError
from hgc.runtime.data.reader import DataReader
from tests.runtime.data import spec

SIZES = [50, 7, 30, 20]


def _make(tmp_path, rng, n_files=2, rows=(13, 9), order=None, nulls=None):
    """Two files: label0,label1 / I1..I3 / C1 (int), C2 (list<=3), C3 (int), C4 (list<=2)."""
    files, want = [], []
    offs = np.concatenate([[0], np.cumsum(SIZES)[:-1]])
    for k in range(n_files):
        n = rows[k]
        labels = {f"label{i}": rng.random(n).astype(np.float32) for i in range(2)}
        conts = {f"I{i}": rng.standard_normal(n).astype(np.float32) for i in range(1, 4)}
        c1 = rng.integers(0, SIZES[0], n)
        c2 = [list(rng.integers(0, SIZES[1], rng.integers(0, 4))) for _ in range(n)]
        c3 = rng.integers(0, SIZES[2], n)
        c4 = [list(rng.integers(0, SIZES[3], rng.integers(1, 3))) for _ in range(n)]
        cats = {"C1": c1, "C2": c2, "C3": c3, "C4": c4}
        path = str(tmp_path / f"part{k}.parquet")
        spec.parquet_file(path, labels, conts, cats, order)
        files.append((path, n))
        for i in range(n):
            slots = [
                [int(c1[i] + offs[0])],
                [int(x + offs[1]) for x in c2[i]],
                [int(c3[i] + offs[2])],
                [int(x + offs[3]) for x in c4[i]],
            ]
            want.append(
                (
                    [float(labels["label0"][i]), float(labels["label1"][i])],
                    [float(conts[f"I{j}"][i]) for j in range(1, 4)],
                    slots,
                )
            )
    spec.write_file_list(str(tmp_path / "_file_list.txt"), [f for f, _ in files])
    spec.metadata(str(tmp_path), files, ["label0", "label1"], ["I1", "I2", "I3"], ["C1", "C2", "C3", "C4"])
    return files, want


def _reader(tmp_path, B=5, **kw):
    kw.setdefault("label_dims", [1, 1])
    kw.setdefault("dense_dim", 3)
    kw.setdefault("sparse", [(1, 1, True), (3, [3, 1, 2], False)])
    kw.setdefault("slot_size_array", SIZES)
    kw.setdefault("key_dtype", "int64")
    kw.setdefault("repeat", False)
    kw.setdefault("num_workers", 1)
    return DataReader("Parquet", str(tmp_path / "_file_list.txt"), B, **kw)


@pytest.mark.parametrize("key_dtype", ["int64", "uint32"])
def test_round_trip_independent_writer(tmp_path, key_dtype):
    rng = np.random.default_rng(3)
    _, want = _make(tmp_path, rng, order=["C4", "I2", "label1", "C1", "I1", "C3", "label0", "C2", "I3"])
    r = _reader(tmp_path, key_dtype=key_dtype)
    batches = list(r)
    assert [b.size for b in batches] == [5, 5, 5, 5, 2] and batches[0].sparse[1].keys.dtype == np.dtype(
        key_dtype
    )
    spec.check_padding(batches[-1])
    spec.assert_same_samples(spec.batches_to_samples(batches, [1, 3], 2), want)


def test_edited_metadata_selects_and_orders_columns(tmp_path):
    rng = np.random.default_rng(4)
    files, want = _make(tmp_path, rng)
    spec.metadata(str(tmp_path), files, ["label1"], ["I3", "I1"], ["C3", "C1"])
    r = _reader(tmp_path, label_dims=1, dense_dim=2, sparse=[(2, 1, True)], slot_size_array=[30, 50])
    got = spec.batches_to_samples(list(r), [2], 1)
    exp = [([lab[1]], [den[2], den[0]], [[sl[2][0] - 57], [sl[0][0] + 30]]) for lab, den, sl in want]
    spec.assert_same_samples(got, exp)


def test_unnamed_columns_fall_back_to_index(tmp_path):
    rng = np.random.default_rng(5)
    n = 6
    t = pa.table(
        {
            "0": pa.array(rng.random(n).astype(np.float32)),
            "1": pa.array(rng.random(n).astype(np.float32)),
            "2": pa.array(rng.integers(0, 9, n)),
        }
    )
    pq.write_table(t, tmp_path / "p.parquet")
    spec.write_file_list(str(tmp_path / "_file_list.txt"), [str(tmp_path / "p.parquet")])
    spec.metadata(str(tmp_path), [("x/p.parquet", n)], ["label0"], ["C1"], ["C2"])
    r = _reader(tmp_path, B=6, label_dims=1, dense_dim=1, sparse=[(1, 1, True)], slot_size_array=[9])
    b = r.read()
    assert np.array_equal(b.label[:, 0], t["0"].to_numpy()) and np.array_equal(
        b.sparse[0].keys, t["2"].to_numpy()
    )


def _expect(tmp_path, match, **kw):
    with pytest.raises(DataError) as e:
        list(_reader(tmp_path, **kw))
    assert match in e.value.rule, e.value.rule
    return e.value


def test_missing_column(tmp_path):
    files, _ = _make(tmp_path, np.random.default_rng(1))
    spec.metadata(str(tmp_path), files, ["label0", "label1"], ["I1", "I2", "I9"], ["C1", "C2", "C3", "C4"])
    err = _expect(tmp_path, "column 'I9' (conts[2]")
    assert err.file == files[0][0]


def test_null_values(tmp_path):
    rng = np.random.default_rng(1)
    files, _ = _make(tmp_path, rng)
    t = pq.read_table(files[1][0])
    lab = t["label1"].to_pylist()
    lab[4] = None
    pq.write_table(
        t.set_column(t.column_names.index("label1"), "label1", pa.array(lab, pa.float32())), files[1][0]
    )
    err = _expect(tmp_path, "null")
    assert err.file == files[1][0] and err.sample == 4
    files, _ = _make(tmp_path, rng)
    t = pq.read_table(files[0][0])
    c2 = t["C2"].to_pylist()
    c2[3] = [1, None]
    pq.write_table(
        t.set_column(t.column_names.index("C2"), "C2", pa.array(c2, pa.list_(pa.int64()))), files[0][0]
    )
    _expect(tmp_path, "null key inside a list")


@pytest.mark.parametrize(
    "col,arr,match",
    [
        ("I2", pa.array(["a"] * 13), "labels and dense features must be float32"),
        ("C3", pa.array(np.zeros(13, np.float32)), "categorical columns must be int64"),
        ("C2", pa.array([["x"]] * 13), "categorical columns must be int64"),
    ],
)
def test_wrong_types(tmp_path, col, arr, match):
    files, _ = _make(tmp_path, np.random.default_rng(1))
    t = pq.read_table(files[0][0])
    pq.write_table(t.set_column(t.column_names.index(col), col, arr), files[0][0])
    err = _expect(tmp_path, match)
    assert col in err.rule and err.file == files[0][0]


@pytest.mark.parametrize(
    "text,match",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"file_stats": [], "labels": [], "conts": []}', "no 'cats' entry"),
        ('{"file_stats": {}, "labels": [], "conts": [], "cats": []}', "'file_stats' must be a list"),
        (
            '{"file_stats": [{"file_name": "a", "num_rows": "x"}], "labels": [], "conts": [], "cats": []}',
            "num_rows",
        ),
        (
            '{"file_stats": [], "labels": [{"index": 0}], "conts": [], "cats": []}',
            "labels[0] needs a string 'col_name'",
        ),
        (
            '{"file_stats": [], "labels": [{"col_name": "a", "index": "0"}], "conts": [], "cats": []}',
            "'index' must be",
        ),
        (
            '{"file_stats": [], "labels": [{"col_name": "a"}], "conts": [{"col_name": "a"}], "cats": []}',
            "more than once",
        ),
    ],
)
def test_malformed_metadata(tmp_path, text, match):
    _make(tmp_path, np.random.default_rng(1))
    (tmp_path / "_metadata.json").write_text(text)
    with pytest.raises(DataError) as e:
        _reader(tmp_path)
    assert match in e.value.rule and e.value.file.endswith("_metadata.json")
    if match == "not valid JSON":
        assert e.value.offset == 1


def test_metadata_counts_against_model_and_slot_size_array(tmp_path):
    _files, _ = _make(tmp_path, np.random.default_rng(1))
    with pytest.raises(DataError, match="'cats' lists 4 columns but slot_size_array has 3"):
        _reader(tmp_path, slot_size_array=SIZES[:3])
    with pytest.raises(DataError, match="'conts' lists 3 columns but the Input's dense_dim is 2"):
        _reader(tmp_path, dense_dim=2)
    with pytest.raises(DataError, match="'labels' lists 2 columns but the Input's label dims is 1"):
        _reader(tmp_path, label_dims=1)
    (tmp_path / "_metadata.json").unlink()
    with pytest.raises(DataError, match="cannot read _metadata.json"):
        _reader(tmp_path)


def test_num_rows_mismatch_and_missing_stats(tmp_path):
    files, _ = _make(tmp_path, np.random.default_rng(1))
    spec.metadata(
        str(tmp_path),
        [(files[0][0], 13), (files[1][0], 10)],
        ["label0", "label1"],
        ["I1", "I2", "I3"],
        ["C1", "C2", "C3", "C4"],
    )
    err = _expect(tmp_path, "has 9 rows but _metadata.json file_stats says 10")
    assert err.file == files[1][0]
    spec.metadata(
        str(tmp_path), [(files[0][0], 13)], ["label0", "label1"], ["I1", "I2", "I3"], ["C1", "C2", "C3", "C4"]
    )
    _expect(tmp_path, "file_stats has no entry for 'part1.parquet'")


def test_nnz_and_key_range(tmp_path):
    _make(tmp_path, np.random.default_rng(1))
    err = _expect(
        tmp_path,
        "nnz=3 is above the slot's maximum nnz_per_slot=2",
        sparse=[(1, 1, True), (3, [2, 1, 2], False)],
    )
    assert "C2" in err.rule and err.sample is not None
    err = _expect(tmp_path, "is outside [0, 29)", slot_size_array=[50, 7, 29, 20])
    assert "C3" in err.rule
    err = _expect(tmp_path, "fixed-length", sparse=[(1, 1, True), (3, [3, 1, 2], True)])


def test_not_a_parquet_file(tmp_path):
    files, _ = _make(tmp_path, np.random.default_rng(1))
    with open(files[1][0], "r+b") as f:
        f.seek(-6, 2)
        f.write(b"XXXXXX")
    err = _expect(tmp_path, "not a readable Parquet file")
    assert err.file == files[1][0]


def test_workers_capped_by_files_and_repeat(tmp_path):
    _, _want = _make(tmp_path, np.random.default_rng(6))
    r = _reader(tmp_path, B=4, repeat=True, num_workers=12)
    got = [r.read() for _ in range(8)]
    assert len(r._threads) == 2 and all(b.size == 4 for b in got)
    r.close()
