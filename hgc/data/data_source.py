"""The Data Source API: ``hugectr.data.DataSourceParams`` and ``DataSource(params).move_to_local()``.

``DataSourceParams`` pairs remote paths (``hdfs_*``) with local paths (``local_*``) for the training and
evaluation data, their file lists, and the dense/sparse models and optimizer states to load.
``move_to_local()`` copies every given remote path to its local counterpart. This build copies from the
local filesystem (plain paths or ``file://`` URIs, with ``use_hdfs=False``); HDFS and S3 need a remote
filesystem client that hgc does not include, and raise :class:`hgc.errors.NotBuiltError`.
"""

from __future__ import annotations

import os
import shutil

from hgc.errors import NotBuiltError

_PAIRS = (
    ("hdfs_train_source", "local_train_source"),
    ("hdfs_train_filelist", "local_train_filelist"),
    ("hdfs_eval_source", "local_eval_source"),
    ("hdfs_eval_filelist", "local_eval_filelist"),
    ("hdfs_dense_model", "local_dense_model"),
    ("hdfs_dense_opt_states", "local_dense_opt_states"),
)
_LIST_PAIRS = (
    ("hdfs_sparse_model", "local_sparse_model"),
    ("hdfs_sparse_opt_states", "local_sparse_opt_states"),
)


class DataSourceParams:
    """Where the data and models live remotely and where they go locally (all arguments optional).

    ``use_hdfs``: read from HDFS (``namenode``:``port``) instead of the local filesystem. ``hdfs_*``: remote
    paths of the training/evaluation data and file lists, the dense model and optimizer states, the sparse
    models and sparse optimizer states (lists), and ``hdfs_model_home`` for dumped models; ``local_*``: the
    matching local paths.
    """

    def __init__(
        self,
        use_hdfs: bool = False,
        namenode: str = "localhost",
        port: int = 9000,
        hdfs_train_source: str = "",
        hdfs_train_filelist: str = "",
        hdfs_eval_source: str = "",
        hdfs_eval_filelist: str = "",
        hdfs_dense_model: str = "",
        hdfs_dense_opt_states: str = "",
        hdfs_sparse_model: list[str] | None = None,
        hdfs_sparse_opt_states: list[str] | None = None,
        hdfs_model_home: str = "",
        local_train_source: str = "",
        local_train_filelist: str = "",
        local_eval_source: str = "",
        local_eval_filelist: str = "",
        local_dense_model: str = "",
        local_dense_opt_states: str = "",
        local_sparse_model: list[str] | None = None,
        local_sparse_opt_states: list[str] | None = None,
        local_model_home: str = "",
    ) -> None:
        if not isinstance(use_hdfs, bool):
            raise ValueError(f"use_hdfs={use_hdfs!r}: must be True or False")
        if not isinstance(namenode, str):
            raise ValueError(f"namenode={namenode!r}: must be a string (host name or IP address)")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"port={port!r}: must be an integer in 1..65535")
        self.use_hdfs = use_hdfs
        self.namenode = namenode
        self.port = port
        strings = {
            "hdfs_train_source": hdfs_train_source,
            "hdfs_train_filelist": hdfs_train_filelist,
            "hdfs_eval_source": hdfs_eval_source,
            "hdfs_eval_filelist": hdfs_eval_filelist,
            "hdfs_dense_model": hdfs_dense_model,
            "hdfs_dense_opt_states": hdfs_dense_opt_states,
            "hdfs_model_home": hdfs_model_home,
            "local_train_source": local_train_source,
            "local_train_filelist": local_train_filelist,
            "local_eval_source": local_eval_source,
            "local_eval_filelist": local_eval_filelist,
            "local_dense_model": local_dense_model,
            "local_dense_opt_states": local_dense_opt_states,
            "local_model_home": local_model_home,
        }
        for name, value in strings.items():
            if not isinstance(value, (str, os.PathLike)):
                raise ValueError(f"{name}={value!r}: must be a path string")
            setattr(self, name, os.fspath(value))
        lists = {
            "hdfs_sparse_model": hdfs_sparse_model,
            "hdfs_sparse_opt_states": hdfs_sparse_opt_states,
            "local_sparse_model": local_sparse_model,
            "local_sparse_opt_states": local_sparse_opt_states,
        }
        for name, value in lists.items():
            value = [] if value is None else value
            if isinstance(value, (str, os.PathLike)) or not all(
                isinstance(v, (str, os.PathLike)) for v in value
            ):
                raise ValueError(f"{name}={value!r}: must be a list of path strings")
            setattr(self, name, [os.fspath(v) for v in value])

    def __repr__(self) -> str:
        return f"DataSourceParams(use_hdfs={self.use_hdfs}, namenode={self.namenode!r}, port={self.port})"


def _scheme(path: str) -> str:
    head = path.split("://", 1)
    return head[0].lower() if len(head) == 2 else ""


class DataSource:
    """Moves the data and models named by a :class:`DataSourceParams` to the local filesystem."""

    def __init__(self, data_source_params: DataSourceParams) -> None:
        if not isinstance(data_source_params, DataSourceParams):
            raise TypeError(
                f"data_source_params: expected DataSourceParams, got {type(data_source_params).__name__}"
            )
        self.params = data_source_params

    def _pairs(self) -> list[tuple[str, str, str]]:
        p = self.params
        out = []
        for src_name, dst_name in _PAIRS:
            src, dst = getattr(p, src_name), getattr(p, dst_name)
            if src:
                if not dst:
                    raise ValueError(f"{src_name}={src!r} has no local destination: set {dst_name}")
                out.append((src_name, src, dst))
        for src_name, dst_name in _LIST_PAIRS:
            srcs, dsts = getattr(p, src_name), getattr(p, dst_name)
            if srcs and len(srcs) != len(dsts):
                raise ValueError(
                    f"{src_name} has {len(srcs)} paths but {dst_name} has {len(dsts)}; they pair up "
                    "one to one"
                )
            out.extend((f"{src_name}[{i}]", s, d) for i, (s, d) in enumerate(zip(srcs, dsts)) if s)
        return out

    def move_to_local(self) -> list[str]:
        """Copy every remote path to its local path (files, or directories recursively); returns the local
        paths written."""
        p = self.params
        pairs = self._pairs()
        if p.use_hdfs and pairs:
            raise NotBuiltError(
                f"reading from HDFS (namenode {p.namenode}:{p.port})", "DataSource.move_to_local"
            )
        written = []
        for name, src, dst in pairs:
            scheme = _scheme(src)
            if scheme in ("hdfs", "viewfs"):
                raise NotBuiltError(f"reading from HDFS ({src})", "DataSource.move_to_local")
            if scheme in ("s3", "s3a", "s3n"):
                raise NotBuiltError(f"reading from S3 ({src})", "DataSource.move_to_local")
            if scheme == "file":
                src = src[len("file://") :]
            elif scheme:
                raise NotBuiltError(
                    f"the remote filesystem '{scheme}://' ({src})", "DataSource.move_to_local"
                )
            if not os.path.exists(src):
                raise FileNotFoundError(f"{name}={src!r} does not exist")
            written.append(_copy(src, dst))
        return written


def _copy(src: str, dst: str) -> str:
    if os.path.isdir(src):
        shutil.copytree(src, dst, dirs_exist_ok=True)
        return dst
    target = os.path.join(dst, os.path.basename(src)) if os.path.isdir(dst) else dst
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    if os.path.abspath(src) != os.path.abspath(target):
        shutil.copy2(src, target)
    return target
