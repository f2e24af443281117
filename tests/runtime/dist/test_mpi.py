"""Real MPI ranks: ``mpirun -np N`` runs of the cpu target (one process per node of vvgpu) train exactly as one
GPU does, with the placement and exchanges the GPUs use, and their snapshots load on other rank counts."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.runtime.dist import worker
from tests.runtime.dist.test_parallel import assert_same, one_gpu

ROOT = Path(__file__).resolve().parents[3]
pytestmark = [pytest.mark.mpi,
              pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun (Open MPI) is not installed"),
              pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None, reason="mpi4py is not installed")]


def mpirun(n: int, module: str, *args: str, timeout: int = 120) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", HGC_TARGET="cpu")
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(n), sys.executable, "-m", module, *args]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def run_ranks(n: int, kind: str, vvgpu: list[list[int]], data: dict[str, Any], out: Path, steps: int = 24,
              **kw: str) -> dict[str, np.ndarray]:
    args = ["--kind", kind, "--vvgpu", json.dumps(vvgpu), "--data", json.dumps(data), "--steps", str(steps),
            "--statistics", "4", "--out", str(out)]
    for k, v in kw.items():
        args += [f"--{k}", v]
    mpirun(n, "tests.runtime.dist.worker", *args)
    with np.load(out) as f:
        res = dict(f)
    assert int(res["ranks"][0]) == n
    return res


@pytest.mark.parametrize("staged", [False, True], ids=["mpi", "staged"])
@pytest.mark.parametrize("vvgpu", [[[0], [1]], [[0, 1], [2], [3]]], ids=["2ranks", "3ranks-4gpus"])
def test_every_collective_over_mpi(vvgpu: list[list[int]], staged: bool) -> None:
    out = mpirun(len(vvgpu), "tests.runtime.dist.mpi_check", json.dumps(vvgpu), *(["--staged"] if staged else []))
    # ranks share stdout: two lines may arrive on one line under load, so find the marks anywhere
    assert sorted(re.findall(r"rank \d+ ok", out)) == [f"rank {r} ok" for r in range(len(vvgpu))]


# (LocalizedSlotSparseEmbeddingOneHot is single-node only: the placement plan refuses it on several ranks)
RUNS = [("wdl", [[0], [1]], "Adam", "Global"), ("wdl", [[0], [1], [2]], "Adam", "LazyGlobal"),
        ("hybrid", [[0, 1], [2]], "SGD", "Local")]


@pytest.mark.parametrize("kind,vvgpu,optimizer,update", RUNS,
                         ids=[f"{r[0]}-{len(r[1])}ranks-{sum(map(len, r[1]))}gpus-{r[3]}" for r in RUNS])
def test_mpirun_trains_as_one_gpu(tmp_path: Path, dist_data: dict[str, Any], kind: str, vvgpu: list[list[int]],
                                  optimizer: str, update: str) -> None:
    got = run_ranks(len(vvgpu), kind, vvgpu, dist_data, tmp_path / "r.npz", optimizer=optimizer, update=update)
    assert_same(got, one_gpu(kind, optimizer, update, dist_data))


def test_mpirun_snapshots_load_on_other_rank_counts(tmp_path: Path, dist_data: dict[str, Any]) -> None:
    """Two ranks save after 12 steps; three ranks and one process each load it and train 6 more steps."""
    run_ranks(2, "wdl", [[0], [1]], dist_data, tmp_path / "w.npz", steps=12, save=str(tmp_path / "s"))
    got = run_ranks(3, "wdl", [[0], [1], [2]], dist_data, tmp_path / "r.npz", steps=6, load=f"{tmp_path / 's'}:11")
    _, want = worker.run("wdl", [[0]], dist_data, 6, load=f"{tmp_path / 's'}:11", statistics=4)
    assert_same(got, want)
