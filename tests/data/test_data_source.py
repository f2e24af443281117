import inspect

import pytest

from hgc.data import DataSource, DataSourceParams
from hgc.errors import NotBuiltError


def test_documented_arguments_and_defaults():
    sig = inspect.signature(DataSourceParams)
    names = [
        "use_hdfs",
        "namenode",
        "port",
        "hdfs_train_source",
        "hdfs_train_filelist",
        "hdfs_eval_source",
        "hdfs_eval_filelist",
        "hdfs_dense_model",
        "hdfs_dense_opt_states",
        "hdfs_sparse_model",
        "hdfs_sparse_opt_states",
        "hdfs_model_home",
        "local_train_source",
        "local_train_filelist",
        "local_eval_source",
        "local_eval_filelist",
        "local_dense_model",
        "local_dense_opt_states",
        "local_sparse_model",
        "local_sparse_opt_states",
        "local_model_home",
    ]
    assert list(sig.parameters) == names
    p = DataSourceParams()
    assert (p.use_hdfs, p.namenode, p.port) == (False, "localhost", 9000)
    assert p.hdfs_sparse_model == [] and p.local_train_source == ""
    with pytest.raises(TypeError, match="hdfs_home"):
        DataSourceParams(hdfs_home="x")
    with pytest.raises(ValueError, match="port=0"):
        DataSourceParams(port=0)
    with pytest.raises(ValueError, match="hdfs_sparse_model="):
        DataSourceParams(hdfs_sparse_model="one/path")


def test_move_to_local_copies_files_and_directories(tmp_path):
    src = tmp_path / "remote"
    (src / "train").mkdir(parents=True)
    (src / "train" / "0.data").write_bytes(b"abc")
    (src / "file_list.txt").write_text("1\nx\n")
    (src / "dense.model").write_bytes(b"\x01\x02")
    (src / "sparse0").mkdir()
    (src / "sparse0" / "key").write_bytes(b"k")
    dst = tmp_path / "local"
    p = DataSourceParams(
        hdfs_train_source=str(src / "train"),
        local_train_source=str(dst / "train"),
        hdfs_train_filelist="file://" + str(src / "file_list.txt"),
        local_train_filelist=str(dst / "file_list.txt"),
        hdfs_dense_model=str(src / "dense.model"),
        local_dense_model=str(dst / "models" / "d.model"),
        hdfs_sparse_model=[str(src / "sparse0")],
        local_sparse_model=[str(dst / "sparse0")],
    )
    written = DataSource(p).move_to_local()
    assert (dst / "train" / "0.data").read_bytes() == b"abc"
    assert (dst / "file_list.txt").read_text() == "1\nx\n"
    assert (dst / "models" / "d.model").read_bytes() == b"\x01\x02"
    assert (dst / "sparse0" / "key").read_bytes() == b"k"
    assert len(written) == 4


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"use_hdfs": True, "namenode": "10.0.0.1", "port": 8020}, "HDFS \\(namenode 10.0.0.1:8020\\)"),
        ({}, "HDFS \\(hdfs://nn:9000/data\\)"),
    ],
)
def test_hdfs_is_not_built(tmp_path, kw, match):
    p = DataSourceParams(
        hdfs_train_source="hdfs://nn:9000/data", local_train_source=str(tmp_path / "t"), **kw
    )
    with pytest.raises(NotBuiltError, match=match):
        DataSource(p).move_to_local()


def test_s3_and_bad_pairs(tmp_path):
    p = DataSourceParams(hdfs_eval_source="s3://bucket/val", local_eval_source=str(tmp_path / "v"))
    with pytest.raises(NotBuiltError, match="S3"):
        DataSource(p).move_to_local()
    with pytest.raises(ValueError, match="local_train_source"):
        DataSource(DataSourceParams(hdfs_train_source=str(tmp_path))).move_to_local()
    with pytest.raises(ValueError, match="pair up"):
        DataSource(DataSourceParams(hdfs_sparse_model=["a", "b"], local_sparse_model=["c"])).move_to_local()
    with pytest.raises(FileNotFoundError, match="nothing"):
        DataSource(
            DataSourceParams(
                hdfs_dense_model=str(tmp_path / "nothing"), local_dense_model=str(tmp_path / "d")
            )
        ).move_to_local()
    with pytest.raises(TypeError, match="DataSourceParams"):
        DataSource({"use_hdfs": False})
    assert DataSource(DataSourceParams()).move_to_local() == []
