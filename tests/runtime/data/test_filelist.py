import os

import pytest

from hgc.errors import DataError
from hgc.runtime.data.filelist import read_file_list, write_file_list


def _files(tmp_path, n):
    out = []
    for i in range(n):
        p = tmp_path / f"d{i}.data"
        p.write_bytes(b"x")
        out.append(str(p))
    return out


def test_reads_only_the_first_count_paths(tmp_path):
    files = _files(tmp_path, 3)
    lst = tmp_path / "l.txt"
    lst.write_text("2\n" + "\n".join(files) + "\n")
    assert read_file_list(str(lst)) == files[:2]


def test_relative_paths_fall_back_to_list_directory(tmp_path, monkeypatch):
    _files(tmp_path, 2)
    lst = tmp_path / "l.txt"
    write_file_list(str(lst), ["d0.data", "./d1.data"])
    monkeypatch.chdir("/")
    got = read_file_list(str(lst))
    assert [os.path.basename(p) for p in got] == ["d0.data", "d1.data"] and all(
        os.path.isfile(p) for p in got
    )


@pytest.mark.parametrize("first", ["abc", "2.5", "-1", "", "three files"])
def test_first_line_not_a_count(tmp_path, first):
    lst = tmp_path / "l.txt"
    lst.write_text(first + "\n" + str(tmp_path / "x") + "\n")
    with pytest.raises(DataError) as e:
        read_file_list(str(lst))
    assert e.value.file == str(lst) and e.value.offset == 0 and "first line" in e.value.rule


def test_zero_count(tmp_path):
    lst = tmp_path / "l.txt"
    lst.write_text("0\n")
    with pytest.raises(DataError, match="0 data files"):
        read_file_list(str(lst))


def test_fewer_paths_than_count(tmp_path):
    files = _files(tmp_path, 2)
    lst = tmp_path / "l.txt"
    text = "5\n" + "\n".join(files) + "\n"
    lst.write_text(text)
    with pytest.raises(DataError) as e:
        read_file_list(str(lst))
    assert "5 data files but only 2" in e.value.rule and e.value.offset == len(text.encode())


def test_missing_and_unreadable_files(tmp_path):
    files = _files(tmp_path, 2)
    lst = tmp_path / "l.txt"
    missing = str(tmp_path / "gone.data")
    lst.write_text(f"3\n{files[0]}\n{missing}\n{files[1]}\n")
    with pytest.raises(DataError) as e:
        read_file_list(str(lst))
    assert "line 3" in e.value.rule and "does not exist" in e.value.rule
    assert e.value.offset == len(f"3\n{files[0]}\n".encode())
    os.mkdir(tmp_path / "adir")
    lst.write_text(f"1\n{tmp_path / 'adir'}\n")
    with pytest.raises(DataError, match="not a regular file"):
        read_file_list(str(lst))
    os.symlink(str(tmp_path / "nowhere"), str(tmp_path / "dangling"))
    lst.write_text(f"1\n{tmp_path / 'dangling'}\n")
    with pytest.raises(DataError, match="does not exist"):
        read_file_list(str(lst))


def test_list_itself_missing_or_binary(tmp_path):
    with pytest.raises(DataError, match="cannot read the file list"):
        read_file_list(str(tmp_path / "none.txt"))
    lst = tmp_path / "b.txt"
    lst.write_bytes(b"1\n\xff\xfe\n")
    with pytest.raises(DataError, match="not UTF-8") as e:
        read_file_list(str(lst))
    assert e.value.offset == 2
