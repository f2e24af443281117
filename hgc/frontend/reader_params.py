"""``DataReaderParams`` (where the data is and how to read it) and ``DataReaderSparseParam`` (one sparse input
of ``Input``).

Rules that need the solver or the model (Raw needs ``num_samples``/``eval_num_samples`` > 0 and 32-bit keys;
several sources need the embedding training cache; RawAsync needs ``is_dlrm``) are checked when the
``Model`` is created, where both are known: :func:`check_reader_for_model`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hgc.frontend._args import (
    REQUIRED,
    as_bool,
    as_data_source_params,
    as_instance,
    as_int,
    as_int_list,
    as_str,
    as_str_or_list,
    bad,
    is_int,
    reject_unknown,
    require_given,
)
from hgc.frontend.enums import Check_t, DataReaderType_t, to_enum
from hgc.frontend.solver import AsyncParam, EmbeddingTrainingCacheParams, Solver, default_async_param


@dataclass
class DataReaderParams:
    """The data reader of a model.

    ``data_reader_type``: Norm (file list of binary files), Raw (one binary file, one-hot, 32-bit keys),
    Parquet (file list + ``_metadata.json``) or RawAsync (MLPerf). ``source``: the training file list (Raw:
    the file); several lists only with the embedding training cache, then with one ``keyset`` file each.
    ``eval_source``: the evaluation list or file. ``check_type``: Sum (Norm checksums) or Non.
    ``cache_eval_data``: evaluation batches kept on the device. ``num_samples``/``eval_num_samples``: sample
    counts of Raw files. ``float_label_dense``: Raw label/dense values are floats (else integers, dense
    read as log(x + 1)). ``num_workers``: reader threads. ``slot_size_array``: per-slot key offsets
    (Parquet, RawAsync). ``data_source_params``: a ``hugectr.data.DataSourceParams`` for remote files.
    """

    data_reader_type: DataReaderType_t
    source: list[str]
    keyset: list[str]
    eval_source: str
    check_type: Check_t
    cache_eval_data: int = 0
    num_samples: int = 0
    eval_num_samples: int = 0
    float_label_dense: bool = False
    read_file_sequentially: bool = False
    num_workers: int = 12
    slot_size_array: list[int] = field(default_factory=list)
    data_source_params: Any = None
    async_param: AsyncParam = field(default_factory=default_async_param)

    def __init__(self, data_reader_type: DataReaderType_t = REQUIRED, source: str | list[str] = REQUIRED,
                 keyset: str | list[str] = "", eval_source: str = REQUIRED, check_type: Check_t = REQUIRED,
                 cache_eval_data: int = 0, num_samples: int = 0, eval_num_samples: int = 0,
                 float_label_dense: bool = False, read_file_sequentially: bool = False, num_workers: int = 12,
                 slot_size_array: list[int] | None = None, data_source_params: Any = None,
                 async_param: AsyncParam | None = None) -> None:
        w = "DataReaderParams()"
        require_given(w, {"data_reader_type": data_reader_type, "source": source, "eval_source": eval_source,
                          "check_type": check_type})
        self.data_reader_type = to_enum(DataReaderType_t, data_reader_type, "data_reader_type", w)
        src = as_str_or_list(w, "source", source)
        self.source = [src] if isinstance(src, str) else src
        if not self.source or not all(self.source):
            raise bad(w, "source", source, "must name at least one file list (Raw: one data file), no empty names")
        ks = as_str_or_list(w, "keyset", keyset)
        self.keyset = ([ks] if ks else []) if isinstance(ks, str) else ks
        self.eval_source = as_str(w, "eval_source", eval_source, nonempty=True)
        self.check_type = to_enum(Check_t, check_type, "check_type", w)
        self.cache_eval_data = as_int(w, "cache_eval_data", cache_eval_data, 0)
        self.num_samples = as_int(w, "num_samples", num_samples, 0)
        self.eval_num_samples = as_int(w, "eval_num_samples", eval_num_samples, 0)
        self.float_label_dense = as_bool(w, "float_label_dense", float_label_dense)
        self.read_file_sequentially = as_bool(w, "read_file_sequentially", read_file_sequentially)
        self.num_workers = as_int(w, "num_workers", num_workers, 1)
        self.slot_size_array = as_int_list(w, "slot_size_array", [] if slot_size_array is None
                                           else slot_size_array, 1)
        self.data_source_params = as_data_source_params(w, "data_source_params", data_source_params)
        self.async_param = (default_async_param() if async_param is None else
                            as_instance(w, "async_param", async_param, AsyncParam, "a hugectr.AsyncParam"))
        if self.keyset and len(self.keyset) != len(self.source):
            raise bad(w, "keyset", keyset, f"needs one keyset file per source ({len(self.source)})")


def check_reader_for_model(reader: DataReaderParams, solver: Solver,
                           etc: EmbeddingTrainingCacheParams | None) -> None:
    """The reader rules that need the solver and the embedding-training-cache settings (at ``Model()``)."""
    w = "Model()"
    kind = reader.data_reader_type
    if kind is DataReaderType_t.Raw:
        for arg in ("num_samples", "eval_num_samples"):
            if getattr(reader, arg) <= 0:
                raise bad(w, f"reader_params.{arg}", getattr(reader, arg),
                          "a Raw reader needs the sample count of its file (> 0)")
        if solver.i64_input_key:
            raise bad(w, "solver.i64_input_key", True, "the Raw format holds 32-bit keys; use i64_input_key=False")
    if kind is DataReaderType_t.RawAsync and not solver.is_dlrm:
        raise bad(w, "reader_params.data_reader_type", kind, "DataReaderType_t.RawAsync needs is_dlrm=True in "
                                                              "CreateSolver")
    using_etc = etc is not None and etc.use_embedding_training_cache
    if len(reader.source) > 1 and not using_etc:
        raise bad(w, "reader_params.source", reader.source,
                  "several sources are allowed only with the embedding training cache (Model(..., etc=...))")


@dataclass
class DataReaderSparseParam:
    """One sparse input: its tensor name, the most keys per slot (an int for every slot, or one per slot),
    whether every sample has exactly that many, and its slot count."""

    sparse_name: str
    nnz_per_slot: int | list[int]
    is_fixed_length: bool
    slot_num: int

    def __init__(self, sparse_name: str = REQUIRED, nnz_per_slot: int | list[int] = REQUIRED,
                 is_fixed_length: bool = REQUIRED, slot_num: int = REQUIRED, **kwargs: Any) -> None:
        w = "DataReaderSparseParam()"
        reject_unknown(w, kwargs, ("top_name",))
        if "top_name" in kwargs:  # HugeCTR's binding names the first argument top_name
            if sparse_name is not REQUIRED:
                raise TypeError(f"{w} got both 'sparse_name' and 'top_name'; give one")
            sparse_name = kwargs["top_name"]
        require_given(w, {"sparse_name": sparse_name, "nnz_per_slot": nnz_per_slot,
                          "is_fixed_length": is_fixed_length, "slot_num": slot_num})
        self.sparse_name = as_str(w, "sparse_name", sparse_name, nonempty=True)
        self.slot_num = as_int(w, "slot_num", slot_num, 1)
        if is_int(nnz_per_slot):
            self.nnz_per_slot = as_int(w, "nnz_per_slot", nnz_per_slot, 1)
        else:
            nnz = as_int_list(w, "nnz_per_slot", nnz_per_slot, 1)
            if len(nnz) != self.slot_num:
                raise bad(w, "nnz_per_slot", nnz_per_slot,
                          f"a list needs one entry per slot (slot_num = {self.slot_num}), got {len(nnz)}")
            self.nnz_per_slot = nnz
        self.is_fixed_length = as_bool(w, "is_fixed_length", is_fixed_length)

    @property
    def top_name(self) -> str:
        return self.sparse_name

    def nnz_list(self) -> list[int]:
        """Most keys of each slot (an int ``nnz_per_slot`` applies to every slot)."""
        n = self.nnz_per_slot
        return [n] * self.slot_num if isinstance(n, int) else list(n)
