import json
import os

import numpy as np
import pytest

from hgc.cli import main
from hgc.runtime.data.reader import DataReader


def _tsv(path, n=90):
    rng = np.random.default_rng(1)
    lines = []
    for _ in range(n):
        f = [str(int(rng.integers(0, 2)))] + [
            "" if rng.random() < 0.2 else str(int(rng.integers(0, 9))) for _ in range(13)
        ]
        f += [format(int(rng.integers(0, 12)), "08x") for _ in range(26)]
        lines.append("\t".join(f))
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("to", ["norm", "raw", "parquet"])
def test_convert_criteo_from_the_shell(tmp_path, capsys, to):
    _tsv(tmp_path / "day.tsv")
    out = tmp_path / "out"
    rc = main(
        [
            "convert",
            "criteo",
            str(tmp_path / "day.tsv"),
            "--to",
            to,
            "--out",
            str(out),
            "--split",
            "0.8,0.2",
            "--freq-threshold",
            "2",
            "--no-progress",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "train: 72 samples" in text and "val: 18 samples" in text
    summary = json.load(open(out / "criteo_conversion.json"))
    kw = {"label_dims": 1, "dense_dim": 13, "repeat": False, "num_workers": 1}
    if to == "norm":
        r = DataReader("Norm", summary["sources"]["train"], 100, sparse=[(1, 2, True), (26, 1, True)], **kw)
    elif to == "raw":
        r = DataReader(
            "Raw",
            summary["sources"]["train"],
            100,
            sparse=[(28, 1, True)],
            slot_size_array=summary["slot_size_array"],
            num_samples=72,
            **kw,
        )
    else:
        assert "slot_size_array = [" in text
        r = DataReader(
            "Parquet",
            summary["sources"]["train"],
            100,
            sparse=[(28, 1, True)],
            key_dtype="int64",
            slot_size_array=summary["slot_size_array"],
            **kw,
        )
    assert r.read().size == 72
    assert os.path.isdir(out)


def test_convert_needs_a_kind_and_reports_bad_input(tmp_path, capsys):
    assert main(["convert"]) == 2
    (tmp_path / "bad.tsv").write_text("1\t2\n")
    from hgc.errors import DataError

    with pytest.raises(DataError, match="expected 40 tab-separated fields"):
        main(
            [
                "convert",
                "criteo",
                str(tmp_path / "bad.tsv"),
                "--to",
                "norm",
                "--out",
                str(tmp_path / "o"),
                "--no-progress",
            ]
        )
