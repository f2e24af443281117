"""Which GPUs a run uses, from HugeCTR's ``vvgpu``: outer list = nodes = MPI ranks, inner = that rank's GPUs.

GPUs get global ids in rank-major order (the placement plan's numbering): vvgpu [[0, 1], [0, 1]] has GPUs
0 and 1 on rank 0 and GPUs 2 and 3 on rank 1. The global batch is split over all GPUs: GPU g takes the
sample rows [g·b, (g+1)·b) of the batch, b = global batch size / G (a short last batch leaves the later
GPUs fewer rows, possibly none).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hgc.passes.plan_placement import Gpu, gpus_of


@dataclass(frozen=True)
class Topology:
    vvgpu: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, vvgpu: Sequence[Sequence[int]]) -> Topology:
        """Check and freeze ``vvgpu`` (a list of nodes, each a non-empty list of distinct device ids)."""
        rule = "must be a non-empty list of nodes, each a non-empty list of distinct device ids >= 0"
        if isinstance(vvgpu, (str, bytes)) or not isinstance(vvgpu, Sequence) or not vvgpu:
            raise ValueError(f"vvgpu = {vvgpu!r} is not allowed: it {rule}")
        nodes = []
        for node in vvgpu:
            if isinstance(node, (str, bytes)) or not isinstance(node, Sequence) or not node:
                raise ValueError(f"vvgpu = {vvgpu!r} is not allowed: it {rule}")
            ids = []
            for d in node:
                if isinstance(d, bool) or not isinstance(d, int) or d < 0:
                    raise ValueError(f"vvgpu = {vvgpu!r} is not allowed: it {rule}")
                ids.append(int(d))
            if len(set(ids)) != len(ids):
                raise ValueError(f"vvgpu = {vvgpu!r} is not allowed: node {len(nodes)} names a device twice")
            nodes.append(tuple(ids))
        return cls(tuple(nodes))

    @property
    def gpus(self) -> tuple[Gpu, ...]:
        return gpus_of(self.vvgpu)

    @property
    def world_size(self) -> int:
        """G, the number of GPUs over all ranks."""
        return sum(len(n) for n in self.vvgpu)

    @property
    def num_ranks(self) -> int:
        return len(self.vvgpu)

    def local_gpus(self, rank: int) -> tuple[int, ...]:
        """Global ids of the GPUs rank ``rank`` drives."""
        if not 0 <= rank < self.num_ranks:
            raise ValueError(f"rank = {rank} is not allowed: vvgpu has ranks 0..{self.num_ranks - 1}")
        start = sum(len(n) for n in self.vvgpu[:rank])
        return tuple(range(start, start + len(self.vvgpu[rank])))

    def rank_of(self, gpu: int) -> int:
        return self.gpus[gpu].rank

    def device_of(self, gpu: int) -> int:
        return self.gpus[gpu].device

    def per_gpu(self, global_batch: int) -> int:
        """The per-GPU batch of a global batch size (which must divide evenly, as HugeCTR requires)."""
        if global_batch % self.world_size:
            raise ValueError(f"batchsize = {global_batch} is not allowed: it must be divisible by the total "
                             f"GPU count {self.world_size} of vvgpu = {[list(n) for n in self.vvgpu]}")
        return global_batch // self.world_size

    def slices(self, n: int, per_gpu: int) -> list[tuple[int, int]]:
        """[lo, hi) sample rows of every GPU for a batch of ``n`` rows and a per-GPU batch ``per_gpu``."""
        if n > per_gpu * self.world_size:
            raise ValueError(f"a batch of {n} rows does not fit {self.world_size} GPU(s) of {per_gpu} rows each")
        return [(min(n, g * per_gpu), min(n, (g + 1) * per_gpu)) for g in range(self.world_size)]
