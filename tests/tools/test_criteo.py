import os
import struct
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from hgc.errors import DataError
from hgc.runtime.data.reader import DataReader
from hgc.tools import criteo
from hgc.tools.criteo import convert_criteo
from tests.runtime.data import spec

INT_NAN = -2147483648


def _tsv(path, n, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        f = [str(int(rng.random() < 0.3))]
        f += ["" if rng.random() < 0.15 else str(int(rng.integers(-3, 25))) for _ in range(13)]
        f += [
            "" if rng.random() < 0.15 else format(int(rng.integers(0, 30)) * 2654435761 % (1 << 32), "08x")
            for _ in range(26)
        ]
        rows.append(f)
    path.write_text("".join("\t".join(r) + "\n" for r in rows))
    return rows


def _reference(rows, threshold, normalize, cross):
    """preprocess.py semantics, written out plainly."""
    n = len(rows)
    cols = list(zip(*rows))
    out = {}
    for c in range(40):
        vals = [(int(v) if v else INT_NAN) if c <= 13 else (v or "80000000") for v in cols[c]]
        if c > 0:
            cnt = {}
            for v in vals:
                cnt[v] = cnt.get(v, 0) + 1
            nan = INT_NAN if c <= 13 else "80000000"
            vals = [v if cnt[v] >= threshold else nan for v in vals]
        cats = sorted(set(vals))
        code = {v: i for i, v in enumerate(cats)}
        enc = [code[v] + (0 if c == 0 else 1) for v in vals]
        out[c] = (enc, len(cats))
    label = [float(v) for v in out[0][0]]
    dense = []
    for c in range(1, 14):
        enc, k = out[c]
        dense.append([((e - 1) / (k - 1) if k > 1 else 0.0) if normalize else float(e) for e in enc])
    offset, keys = 0, {}
    for c in range(14, 40):
        enc, k = out[c]
        keys[c] = [e + offset for e in enc]
        offset += k
    crossed = []
    if cross:
        for a, b in ((14, 15), (16, 17)):
            width = out[b][1]
            v = [keys[a][i] * width + keys[b][i] for i in range(n)]
            order = {x: i + 1 for i, x in enumerate(sorted(set(v)))}
            crossed.append([order[x] + offset for x in v])
            offset += len(order)
    samples = []
    for i in range(n):
        slots = ([[crossed[0][i], crossed[1][i]]] if cross else []) + [[keys[c][i]] for c in range(14, 40)]
        samples.append(([label[i]], [dense[j][i] for j in range(13)], slots))
    return samples, {c: out[c][1] for c in range(14, 40)}, offset


@pytest.mark.parametrize("normalize,cross", [(True, True), (False, False)])
def test_norm_matches_preprocess_and_criteo2hugectr(tmp_path, monkeypatch, normalize, cross):
    monkeypatch.setattr(criteo, "BLOCK_BYTES", 3000)  # many small batches: exercises the streaming passes
    rows = _tsv(tmp_path / "in.tsv", 230)
    res = convert_criteo(
        str(tmp_path / "in.tsv"),
        str(tmp_path / "out"),
        "norm",
        normalize_dense=normalize,
        feature_cross=cross,
        freq_threshold=4,
        split=(0.7, 0.2, 0.1),
        samples_per_file=50,
        progress=False,
    )
    want, _card, total = _reference(rows, 4, normalize, cross)
    assert res.num_samples == {"train": 161, "val": 46, "test": 23}
    assert res.vocabulary_size == total + 1
    got = []
    for split in ("train", "val", "test"):
        files = Path(res.sources[split]).read_text().split()
        assert int(files[0]) == len(files) - 1 == -(-res.num_samples[split] // 50)
        keyset_seen = []
        for f in files[1:]:
            hdr, samples = spec.parse_norm(Path(f).read_bytes(), False)
            assert hdr[:5] == (1, len(samples), 1, 13, 26 + cross)
            got += samples
            for s in samples:
                for sl in s[2]:
                    for k in sl:
                        if k not in keyset_seen:
                            keyset_seen.append(k)
        ks = Path(res.keysets[split][0]).read_bytes()
        assert list(struct.unpack(f"<{len(ks) // 4}I", ks)) == keyset_seen
    spec.assert_same_samples(got, want)
    sparse = ([(1, 2, True)] if cross else []) + [(26, 1, True)]
    r = DataReader(
        "Norm",
        res.sources["train"],
        64,
        label_dims=1,
        dense_dim=13,
        sparse=sparse,
        repeat=False,
        num_workers=1,
    )
    spec.assert_same_samples(spec.batches_to_samples(list(r), [s[0] for s in sparse], 1), want[:161])


def test_files_per_list_groups_lists_and_keysets(tmp_path):
    _tsv(tmp_path / "in.tsv", 120)
    res = convert_criteo(
        tmp_path / "in.tsv",
        tmp_path / "o",
        "norm",
        split=[1.0],
        samples_per_file=25,
        files_per_list=2,
        progress=False,
    )
    lists = res.file_lists["train"]
    assert [os.path.basename(x) for x in lists] == ["file_list.0.txt", "file_list.1.txt", "file_list.2.txt"]
    assert [Path(x).read_text().split()[0] for x in lists] == ["2", "2", "1"]
    assert [os.path.basename(x) for x in res.keysets["train"]] == [f"file_list.{j}.keyset" for j in range(3)]


def test_parquet_and_raw_outputs(tmp_path):
    rows = _tsv(tmp_path / "in.tsv", 150, seed=3)
    want, card, _ = _reference(rows, 6, True, True)
    res = convert_criteo(tmp_path / "in.tsv", tmp_path / "pq", "parquet", split=(0.8, 0.2), progress=False)
    names = ["C1_C2", "C3_C4"] + [f"C{i}" for i in range(1, 27)]
    assert res.slot_names == names and len(res.slot_size_array) == 28
    assert res.slot_size_array[2:] == [card[c] for c in range(14, 40)]
    t = pq.read_table(os.path.join(tmp_path, "pq", "train", "0.parquet"))
    assert t.schema.field("label").type == "float" and t.schema.field("C5").type == "int64"
    r = DataReader(
        "Parquet",
        res.sources["train"],
        50,
        label_dims=1,
        dense_dim=13,
        sparse=[(2, 1, True), (26, 1, True)],
        slot_size_array=res.slot_size_array,
        key_dtype="int64",
        repeat=False,
        num_workers=1,
    )
    got = spec.batches_to_samples(list(r), [2, 26], 1)
    offs = np.concatenate([[0], np.cumsum(res.slot_size_array)[:-1]])
    norm_off = np.concatenate([[0], np.cumsum([card[c] for c in range(14, 40)])[:-1]])
    cross_base = sum(card.values())
    for g, (lab, den, slots) in zip(got, want[:120]):
        local = [slots[0][0] - cross_base - 1, slots[0][1] - cross_base - res.slot_size_array[0] - 1]
        local += [slots[1 + c][0] - norm_off[c] - 1 for c in range(26)]
        assert [k[0] for k in g[2]] == [int(offs[s] + local[s]) for s in range(28)]
        np.testing.assert_array_equal(np.float32(g[1]), np.float32(den))
    res = convert_criteo(tmp_path / "in.tsv", tmp_path / "raw", "raw", split=(0.8, 0.2), progress=False)
    assert os.path.getsize(res.sources["train"]) == 120 * 4 * (1 + 13 + 28)
    r = DataReader(
        "Raw",
        res.sources["val"],
        30,
        label_dims=1,
        dense_dim=13,
        sparse=[(28, 1, True)],
        slot_size_array=res.slot_size_array,
        repeat=False,
        num_samples=30,
    )
    b = r.read()
    raw_dense = [[max(int(v), 0) if v else 0 for v in row[1:14]] for row in rows[120:]]
    np.testing.assert_array_equal(b.dense, np.log(np.asarray(raw_dense, np.float32) + np.float32(1)))
    np.testing.assert_array_equal(b.label[:, 0], [float(r[0]) for r in rows[120:]])


def test_bad_input(tmp_path):
    rows = _tsv(tmp_path / "in.tsv", 20)
    lines = Path(tmp_path / "in.tsv").read_text().splitlines()
    lines[7] = "\t".join(lines[7].split("\t")[:-2])
    (tmp_path / "short.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as e:
        convert_criteo(tmp_path / "short.tsv", tmp_path / "o", "norm", progress=False)
    assert "line 8" in e.value.rule and "found 38" in e.value.rule and e.value.sample == 7
    lines = Path(tmp_path / "in.tsv").read_text().splitlines()
    f = lines[3].split("\t")
    f[2] = "abc"
    lines[3] = "\t".join(f)
    (tmp_path / "text.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="not a readable Criteo TSV"):
        convert_criteo(tmp_path / "text.tsv", tmp_path / "o", "norm", progress=False)
    (tmp_path / "empty.tsv").write_text("")
    with pytest.raises(DataError, match="no rows"):
        convert_criteo(tmp_path / "empty.tsv", tmp_path / "o", "norm", progress=False)
    with pytest.raises(DataError, match="cannot read"):
        convert_criteo(tmp_path / "missing.tsv", tmp_path / "o", "norm", progress=False)
    with pytest.raises(ValueError, match="split="):
        convert_criteo(tmp_path / "in.tsv", tmp_path / "o", "norm", split=(0.5, 0.2))
    with pytest.raises(ValueError, match="to='csv'"):
        convert_criteo(tmp_path / "in.tsv", tmp_path / "o", "csv")
    assert len(rows) == 20


def _peak_while_streaming(tmp_path, monkeypatch, rows, to):
    """Largest Arrow + NumPy memory in use at any batch boundary while converting ``rows`` rows."""
    import tracemalloc

    import pyarrow as pa

    _tsv(tmp_path / f"in{rows}.tsv", rows, seed=3)
    inner = criteo._Input.batches
    peak = [0, 0]

    def sampled(self, desc):
        for item in inner(self, desc):
            peak[0] = max(peak[0], pa.total_allocated_bytes() + tracemalloc.get_traced_memory()[0])
            peak[1] += 1
            yield item

    monkeypatch.setattr(criteo._Input, "batches", sampled)
    monkeypatch.setattr(criteo, "BLOCK_BYTES", 16384)
    monkeypatch.setattr(criteo, "MERGE_ROWS", 512)  # merge the per-batch counts as the real sizes would
    tracemalloc.start()
    try:
        # Parquet buffers up to a file's rows before writing it: small files keep that bounded too
        res = convert_criteo(tmp_path / f"in{rows}.tsv", tmp_path / f"out{rows}", to, split=(0.8, 0.2),
                             samples_per_file=500 if to == "parquet" else None, progress=False)
    finally:
        tracemalloc.stop()
    assert sum(res.num_samples.values()) == rows
    return peak[0], peak[1]


@pytest.mark.parametrize("to", ["raw", "parquet"])
def test_memory_stays_bounded_as_the_input_grows(tmp_path, monkeypatch, to):
    # the keys come from 30 values per column, so what the conversion must remember does not grow with rows
    small, batches_small = _peak_while_streaming(tmp_path, monkeypatch, 2000, to)
    large, batches_large = _peak_while_streaming(tmp_path, monkeypatch, 8000, to)
    assert batches_large > 3 * batches_small // 2 > 4  # both inputs were streamed in many small blocks
    assert large < 1.5 * small + (1 << 20), (small, large)  # 4x the data, not 4x the memory


def test_progress_bar_on_request(tmp_path, capsys):
    pytest.importorskip("tqdm")
    _tsv(tmp_path / "in.tsv", 300)
    convert_criteo(tmp_path / "in.tsv", tmp_path / "o", "raw", split=(0.8, 0.2), progress=True)
    err = capsys.readouterr().err
    assert "B/s" in err or "100%" in err, err
    convert_criteo(tmp_path / "in.tsv", tmp_path / "o2", "raw", split=(0.8, 0.2), progress=False)
    assert capsys.readouterr().err == ""
