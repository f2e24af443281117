"""The multi-GPU cuda runtime under real MPI ranks, on the fake GPU: ``mpirun -np N python -m
tests.runtime.dist.test_cuda_parallel_mpi <worker arguments>`` runs tests/runtime/dist/worker.py's training
with every rank's executors on host places and the MPI communicator carrying what NCCL carries on GPUs (the
gradient buckets, the exchanges, the losses, the gathered predictions). Equal to one GPU."""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.runtime.dist.test_mpi import mpirun
from tests.runtime.dist.test_parallel import assert_same, one_gpu

RUNS = [("wdl", [[0], [1]], "Adam", "Global"), ("hybrid", [[0, 1], [2]], "SGD", "Local")]


@pytest.mark.mpi
@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun (Open MPI) is not installed")
@pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None, reason="mpi4py is not installed")
@pytest.mark.parametrize("kind,vvgpu,optimizer,update", RUNS,
                         ids=[f"{r[0]}-{len(r[1])}ranks-{sum(map(len, r[1]))}gpus" for r in RUNS])
def test_mpirun_fake_gpus_train_as_one(tmp_path: Path, dist_data: dict[str, Any], kind: str,
                                       vvgpu: list[list[int]], optimizer: str, update: str) -> None:
    out = tmp_path / "r.npz"
    mpirun(len(vvgpu), "tests.runtime.dist.test_cuda_parallel_mpi", "--kind", kind, "--vvgpu", json.dumps(vvgpu),
           "--data", json.dumps(dist_data), "--steps", "24", "--statistics", "4", "--optimizer", optimizer,
           "--update", update, "--out", str(out))
    with np.load(out) as f:
        got = dict(f)
    assert int(got["ranks"][0]) == len(vvgpu) and int(got.pop("cuda")[0]) == 1
    assert_same(got, one_gpu(kind, optimizer, update, dist_data))


def main(argv: list[str]) -> int:
    """One rank: the worker's run on the fake GPU (the result file also says the cuda path ran)."""
    from hgc.runtime.dist import cuda_parallel
    from tests.runtime.dist import worker
    from tests.runtime.dist.test_cuda_parallel import fake_dist_cuda

    ran: list[int] = []
    real = cuda_parallel.DistributedCudaExecutor.train_step

    def counted(self: Any, *a: Any, **kw: Any) -> Any:
        ran.append(1)
        return real(self, *a, **kw)

    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(cuda_parallel.DistributedCudaExecutor, "train_step", counted)
        with fake_dist_cuda(mp):
            saved: dict[str, Any] = {}
            mp.setattr(np, "savez", lambda path, **res: saved.update(path=path, res=res))
            rc = worker.main(argv)
    finally:
        mp.undo()
    if saved:
        np.savez(saved["path"], cuda=np.asarray([int(bool(ran))]), **saved["res"])
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
