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


@pytest.mark.parametrize("to", ["norm", "parquet"])
def test_convert_adult_from_the_shell_matches_the_api(tmp_path, capsys, to):
    from hgc.tools import convert_adult
    from tests.tools.test_adult import _rows, _write

    rng = np.random.default_rng(5)
    src = tmp_path / "uci"
    src.mkdir()
    _write(src / "adult.data", _rows(rng, 83), False)
    _write(src / "adult.test", _rows(rng, 29), True)
    rc = main(["convert", "adult", str(src), "--to", to, "--out", str(tmp_path / "cli"),
               "--samples-per-file", "40", "--cross", "education,occupation", "--min-count", "1"])
    text = capsys.readouterr().out
    assert rc == 0, text
    api = convert_adult(src / "adult.data", src / "adult.test", tmp_path / "api",
                        "Norm" if to == "norm" else "Parquet", crosses=[("education", "occupation")], min_count=1, samples_per_file=40)
    assert "train: 83 samples" in text and "test: 29 samples" in text
    assert f"slot_size_array = [{', '.join(map(str, api.slot_size_array))}]" in text
    assert "('wide', 10, True, 1), ('deep', 1, True, 9)" in text  # 9 base features + 1 cross in the wide slot
    for split in ("train", "test"):
        names = sorted(os.listdir(tmp_path / "api" / split))
        assert names == sorted(os.listdir(tmp_path / "cli" / split))
        for name in names:
            if name.endswith((".data", ".parquet")):
                a = (tmp_path / "api" / split / name).read_bytes()
                assert a == (tmp_path / "cli" / split / name).read_bytes(), name
    assert len([n for n in names if n.endswith((".data", ".parquet"))]) == 1  # 29 test rows, 40 per file
    assert main(["convert", "adult", str(src / "adult.data"), str(src / "adult.test"), "--to", to,
                 "--out", str(tmp_path / "two")]) == 0  # or the two files by name


def test_convert_adult_reports_bad_input_in_one_line(tmp_path, capsys):
    assert main(["convert", "adult", str(tmp_path), "--to", "norm", "--out", str(tmp_path / "o")]) == 1
    assert "UCI Adult files not found" in capsys.readouterr().err
    assert main(["convert", "adult", "a", "b", "c", "--to", "norm", "--out", str(tmp_path / "o")]) == 1
    assert "give a folder holding adult.data and adult.test" in capsys.readouterr().err
    (tmp_path / "adult.data").write_text("39, State-gov, 77516\n")
    (tmp_path / "adult.test").write_text("")
    assert main(["convert", "adult", str(tmp_path), "--to", "norm", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hgc convert adult: error:") and "adult.data" in err and "expected 15" in err
    assert main(["convert", "adult", str(tmp_path), "--to", "norm", "--out", str(tmp_path / "o"),
                 "--cross", "education,planet"]) == 1
    assert "crosses entry ('education', 'planet')" in capsys.readouterr().err
