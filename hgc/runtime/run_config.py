"""Plain settings the runtime needs, taken from the frontend's Solver / DataReaderParams / OptParamsPy.

The runtime never imports the frontend: ``Model`` fills these records and hands them over.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ReaderConfig:
    format: str = "Norm"  # Norm | Raw | Parquet | RawAsync
    source: tuple[str, ...] = ()
    eval_source: str = ""
    check_type: str = "Sum"
    num_samples: int = 0
    eval_num_samples: int = 0
    float_label_dense: bool = False
    num_workers: int = 12
    slot_size_array: tuple[int, ...] = ()
    cache_eval_data: int = 0
    read_file_sequentially: bool = False


@dataclass(frozen=True)
class RunConfig:
    seed: int = 0
    batchsize: int = 2048
    batchsize_eval: int = 2048
    max_eval_batches: int = 100
    lr: float = 0.001
    warmup_steps: int = 1
    decay_start: int = 0
    decay_steps: int = 1
    decay_power: float = 2.0
    end_lr: float = 0.0
    repeat_dataset: bool = True
    use_mixed_precision: bool = False
    enable_tf32_compute: bool = False
    scaler: float = 1.0
    metrics_spec: tuple[tuple[str, float], ...] = (("AUC", 1.0),)
    i64_input_key: bool = False
    vvgpu: tuple[tuple[int, ...], ...] = ((0,),)
    use_cuda_graph: bool = True
    num_iterations_statistics: int = 20  # hybrid embedding: batches counted before the split
    drop_incomplete_batch: bool = True
    gen_loss_summary: bool = True
    optimizer: dict[str, Any] = field(default_factory=lambda: {"optimizer_type": "Adam", "update_type": "Global"})
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    target: str = "cpu"

    @property
    def world_size(self) -> int:
        return sum(len(g) for g in self.vvgpu)
