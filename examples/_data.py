"""Small generated datasets for the examples (hgc extension: learnable labels, so AUC means something)."""
from __future__ import annotations

import os

import hgc as hugectr
from hgc.tools import DataGenerator, DataGeneratorParams


def generate(folder: str, fmt: str, slot_size_array: list[int], nnz_array: list[int] | None = None,
             dense_dim: int = 13, label_dim: int = 1, num_files: int = 4, samples_per_file: int = 16384,
             eval_samples: int = 16384, float_label_dense: bool = False) -> tuple[str, str]:
    """Write a train/eval dataset under ``folder`` once; returns (train source, eval source)."""
    ext = {"Norm": "txt", "Parquet": "txt", "Raw": "bin"}[fmt]
    train = os.path.join(folder, f"train.{ext}" if fmt == "Raw" else "file_list.txt")
    test = os.path.join(folder, f"test.{ext}" if fmt == "Raw" else "file_list_test.txt")
    if not (os.path.exists(train) and os.path.exists(test)):
        params = DataGeneratorParams(
            format=getattr(hugectr.DataReaderType_t, fmt), label_dim=label_dim, dense_dim=dense_dim,
            num_slot=len(slot_size_array), i64_input_key=fmt == "Parquet", source=train, eval_source=test,
            slot_size_array=slot_size_array, nnz_array=nnz_array or [1] * len(slot_size_array),
            check_type=hugectr.Check_t.Sum, num_files=num_files, eval_num_files=1,
            num_samples_per_file=samples_per_file, num_samples=num_files * samples_per_file,
            eval_num_samples=eval_samples, float_label_dense=float_label_dense, learnable=True, seed=2026)
        DataGenerator(params).generate()
    return train, test
