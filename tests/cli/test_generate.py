import os

import numpy as np
import pytest

from hgc.cli import main
from hgc.runtime.data.reader import DataReader


def test_generate_norm_from_the_shell(tmp_path, capsys):
    src, ev = str(tmp_path / "d" / "file_list.txt"), str(tmp_path / "d" / "file_list_test.txt")
    rc = main(
        [
            "generate",
            "--format",
            "norm",
            "--source",
            src,
            "--eval-source",
            ev,
            "--slot-size-array",
            "10,20,30",
            "--nnz-array",
            "1,2,1",
            "--dense-dim",
            "2",
            "--num-files",
            "2",
            "--eval-num-files",
            "1",
            "--num-samples-per-file",
            "9",
            "--check-type",
            "Non",
            "--seed",
            "1",
            "--learnable",
        ]
    )
    assert rc == 0 and "Norm data" in capsys.readouterr().out
    r = DataReader(
        "Norm",
        src,
        6,
        label_dims=1,
        dense_dim=2,
        sparse=[(3, [1, 2, 1], True)],
        check_type="Non",
        slot_size_array=[10, 20, 30],
        repeat=False,
    )
    batches = list(r)
    assert [b.size for b in batches] == [6, 6, 3, 3]  # two workers, one 9-sample file each
    assert set(np.unique(np.concatenate([b.label[:, 0] for b in batches]))) <= {0.0, 1.0}
    assert os.path.exists(ev)


@pytest.mark.parametrize("fmt,src", [("raw", "t.bin"), ("parquet", "pq/_file_list.txt")])
def test_generate_raw_and_parquet(tmp_path, fmt, src):
    src = str(tmp_path / src)
    ev = src.replace("t.bin", "e.bin").replace("_file_list", "_file_list_eval")
    rc = main(
        [
            "generate",
            "--format",
            fmt,
            "--source",
            src,
            "--eval-source",
            ev,
            "--slot-size-array",
            "5,6",
            "--dense-dim",
            "3",
            "--num-samples",
            "40",
            "--eval-num-samples",
            "8",
            "--num-files",
            "1",
            "--eval-num-files",
            "1",
            "--num-samples-per-file",
            "12",
            "--i64-input-key" if fmt == "parquet" else "--float-label-dense",
            "--dist-type",
            "Uniform",
        ]
    )
    assert rc == 0
    kw = {
        "label_dims": 1,
        "dense_dim": 3,
        "sparse": [(2, 1, True)],
        "slot_size_array": [5, 6],
        "repeat": False,
    }
    if fmt == "raw":
        r = DataReader("Raw", src, 64, num_samples=40, float_label_dense=True, **kw)
        assert r.read().size == 40
    else:
        r = DataReader("Parquet", src, 64, key_dtype="int64", **kw)
        assert r.read().size == 12


def test_generate_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--format", "csv", "--source", "a", "--eval-source", "b", "--slot-size-array", "1"])
    with pytest.raises(SystemExit):
        main(
            [
                "generate",
                "--format",
                "norm",
                "--source",
                "a",
                "--eval-source",
                "b",
                "--slot-size-array",
                "1,x",
            ]
        )
    with pytest.raises(ValueError, match="alpha=1.0"):
        main(
            [
                "generate",
                "--format",
                "norm",
                "--source",
                str(tmp_path / "a"),
                "--eval-source",
                str(tmp_path / "b"),
                "--slot-size-array",
                "4",
                "--alpha",
                "1.0",
            ]
        )
