"""Trained-and-saved tiny models for the inference tests, their reference predictions from the trainer, and a
throw-away redis-server."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import hgc
from hgc.config import config
from hgc.tools import DataGenerator, DataGeneratorParams
from tests.runtime.tiny import DENSE, SLOTS, Data, make_data, runtime, train_steps, wdl

EVAL_BATCHES = 12  # 12 · 32 = 384 rows of a 300-sample evaluation file: the last 84 wrap around
BATCH = 32


@dataclass
class Deployed:
    """A model's files after training (graph JSON, dense file, sparse folders) and what the trainer
    predicted on the evaluation source for EVAL_BATCHES batches."""

    name: str
    graph: str
    dense: str
    sparse: list[str]
    source: str
    fmt: Any
    preds: np.ndarray
    labels: np.ndarray
    auc: float
    exported: str  # the same predictions through Model.export_predictions (text, 6 significant digits)
    slot_size_array: list[int] = field(default_factory=list)
    i64: bool = False
    model: Any = None


def save(m: hgc.Model, folder: str, name: str, source: str, fmt: Any, batches: int = EVAL_BATCHES,
         **extra: Any) -> Deployed:
    """Save ``m`` (snapshot 0, graph JSON) under ``folder`` and evaluate ``batches`` batches with the trainer."""
    prefix = os.path.join(folder, name)
    m.save_params_to_files(prefix, 0)
    graph = prefix + ".json"
    m.graph_to_json(graph)
    trainer = runtime(m).trainer
    preds, labels = [], []
    exported = prefix + ".predictions"
    for _ in range(batches):
        assert m.eval()
        m.export_predictions(exported, prefix + ".labels")
        p, y = trainer.last_eval_batch()
        preds.append(np.array(p))
        labels.append(np.array(y))
    auc = dict(m.get_eval_metrics())["AUC"]
    n = len(m.embedding_names())
    return Deployed(name, graph, f"{prefix}_dense_0.model", [f"{prefix}{i}_sparse_0.model" for i in range(n)],
                    source, fmt, np.concatenate(preds), np.concatenate(labels), auc, exported, model=m, **extra)


def deploy_wdl(folder: str, steps: int = 20) -> Deployed:
    """tiny.wdl (a distributed and a localized hash embedding) trained ``steps`` steps on Norm data."""
    with config.patch(target="cpu"):
        data = make_data(os.path.join(folder, "data"))
        m = wdl(data, model_name="tiny_wdl", max_eval_batches=EVAL_BATCHES)
        train_steps(m, steps)
        return save(m, folder, "tiny_wdl", data.test, hgc.DataReaderType_t.Norm)


def params(d: Deployed, **kw: Any) -> hgc.inference.InferenceParams:
    """InferenceParams for a deployed model (batch 32, no cache unless asked), with overrides."""
    args = dict(model_name=d.name, max_batchsize=BATCH, hit_rate_threshold=0.5, dense_model_file=d.dense,
                sparse_model_files=list(d.sparse), use_gpu_embedding_cache=False, cache_size_percentage=0.0,
                i64_input_key=d.i64)
    args.update(kw)
    return hgc.inference.InferenceParams(**args)


def predict(d: Deployed, p: Any, batches: int = EVAL_BATCHES) -> np.ndarray:
    model = hgc.inference.InferenceModel(d.graph, p)
    return model.predict(batches, d.source, d.fmt, hgc.Check_t.Sum if d.fmt is hgc.DataReaderType_t.Norm
                         else hgc.Check_t.Non, slot_size_array=d.slot_size_array or None)


def rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def parquet_data(folder: str) -> Data:
    """The tiny shape as Parquet (one key per slot; keys local to their slot)."""
    train, test = os.path.join(folder, "file_list.txt"), os.path.join(folder, "file_list_test.txt")
    DataGenerator(DataGeneratorParams(
        format=hgc.DataReaderType_t.Parquet, label_dim=1, dense_dim=DENSE, num_slot=len(SLOTS), i64_input_key=False,
        source=train, eval_source=test, slot_size_array=list(SLOTS), nnz_array=[1] * len(SLOTS), num_files=2,
        eval_num_files=1, num_samples_per_file=300, learnable=True, seed=11)).generate()
    return Data(train, test, folder)


def raw_data(folder: str) -> tuple[str, str]:
    """The tiny shape as Raw (one key per slot, local to its slot): 600 training and 200 evaluation samples."""
    train, test = os.path.join(folder, "train.bin"), os.path.join(folder, "test.bin")
    DataGenerator(DataGeneratorParams(
        format=hgc.DataReaderType_t.Raw, label_dim=1, dense_dim=DENSE, num_slot=len(SLOTS), i64_input_key=False,
        source=train, eval_source=test, slot_size_array=list(SLOTS), nnz_array=[1] * len(SLOTS),
        num_samples=600, eval_num_samples=200, learnable=True, seed=5)).generate()
    return train, test


# -- redis-server -----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    address: str
    port: int


def redis_server(folder: str, *extra: str) -> Iterator[RedisServer]:
    """A redis-server on a free local port (no persistence), stopped afterwards; skips the test when
    redis-server or the redis package is missing."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not on PATH (Debian package redis-server; .ci/run installs it)")
    pytest.importorskip("redis", reason="the redis package is missing (pip install 'hgc[hps]')")
    import redis

    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", folder, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0))
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.exceptions.AuthenticationError:  # started with --requirepass: it answers
                break
            except redis.exceptions.ConnectionError:
                if proc.poll() is not None:
                    pytest.fail(f"redis-server exited with code {proc.returncode} on port {port}")
                time.sleep(0.02)
        else:
            pytest.fail(f"redis-server did not answer on port {port} within 4 s")
        client.close()
        yield RedisServer(f"127.0.0.1:{port}", port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
