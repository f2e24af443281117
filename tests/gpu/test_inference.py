"""InferenceModel on the cuda target: models trained (on the cpu target) and saved, then served with the
embedding layers resolved through the parameter server and combined on the GPU
(hgc.runtime.inference.device_lookup). The cuda predictions must match the cpu target's inference (which
tests/runtime/inference pins to the trainer to 1e-6) up to the GEMMs' summation order; under mixed precision
up to fp16 rounding."""
from __future__ import annotations

import numpy as np
import pytest

from tests.gpu._util import gpu, rel_err

pytestmark = pytest.mark.gpu
cp = gpu()

import hgc  # noqa: E402
from hgc.config import config  # noqa: E402
from hgc.errors import NotBuiltError  # noqa: E402
from tests.runtime.inference.deploy import BATCH, EVAL_BATCHES, Deployed, deploy_wdl, params  # noqa: E402

FP32_TOL = 1e-5
FP16_TOL = 2e-2


def _model(d: Deployed, target: str, **kw: object) -> hgc.inference.InferenceModel:
    with config.patch(target=target):
        try:
            return hgc.inference.InferenceModel(d.graph, params(d, **kw))
        except NotBuiltError as e:
            pytest.skip(str(e))


def _predict(model: hgc.inference.InferenceModel, d: Deployed, batches: int = EVAL_BATCHES) -> np.ndarray:
    return model.predict(batches, d.source, hgc.DataReaderType_t.Norm, hgc.Check_t.Sum)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    return deploy_wdl(str(tmp_path_factory.mktemp("tiny_wdl_gpu")))


@pytest.mark.parametrize("cache", [False, True], ids=["server", "cache"])
def test_cuda_predictions_match_the_cpu_target(tiny, cache):
    kw = dict(use_gpu_embedding_cache=cache, cache_size_percentage=0.3, hit_rate_threshold=0.9)
    cpu = _predict(_model(tiny, "cpu", **kw), tiny)
    model = _model(tiny, "cuda", **kw)
    assert model._rt.target == "cuda"
    got = _predict(model, tiny)
    assert got.shape == (BATCH * EVAL_BATCHES, 1) and got.dtype == np.float32
    assert rel_err(got, cpu) < FP32_TOL
    assert rel_err(got, tiny.preds) < FP32_TOL
    auc = model.evaluate(EVAL_BATCHES, tiny.source, hgc.DataReaderType_t.Norm, hgc.Check_t.Sum)
    assert abs(auc - tiny.auc) < 1e-4
    logits = model.check_out_tensor("add")
    assert rel_err(1.0 / (1.0 + np.exp(-logits.astype(np.float64))), tiny.preds[-BATCH:]) < FP32_TOL


def test_cuda_default_vectors_and_mixed_precision(tiny, tmp_path):
    from hgc.runtime.checkpoint import read_sparse_model, write_sparse_model

    half = []
    for i, path in enumerate(tiny.sparse):
        keys, vectors, slots = read_sparse_model(path, 1 if i == 0 else 4)
        keep = np.arange(keys.shape[0]) % 2 == 1
        write_sparse_model(str(tmp_path / f"h{i}"), keys[keep], vectors[keep], None if slots is None else slots[keep])
        half.append(str(tmp_path / f"h{i}"))
    kw = dict(sparse_model_files=half, default_value_for_each_table=[0.3, -0.1])
    cpu = _predict(_model(tiny, "cpu", **kw), tiny, 3)
    assert rel_err(_predict(_model(tiny, "cuda", **kw), tiny, 3), cpu) < FP32_TOL
    fp16 = _model(tiny, "cuda", use_mixed_precision=True)
    assert fp16._rt.compiled.plans["precision"].compute_dtype == "float16"
    assert rel_err(_predict(fp16, tiny, 3), tiny.preds[:3 * BATCH]) < FP16_TOL


def test_cuda_dlrm_and_one_hot(tmp_path_factory):
    from tests.runtime.inference.test_runtime import _deploy_dlrm, _deploy_one_hot_raw

    with config.patch(target="cpu"):
        dlrm = _deploy_dlrm(str(tmp_path_factory.mktemp("dlrm_gpu")))
        one_hot = _deploy_one_hot_raw(str(tmp_path_factory.mktemp("one_hot_gpu")))
    got = _predict(_model(dlrm, "cuda"), dlrm)
    assert rel_err(got, dlrm.preds) < FP32_TOL
    rows = one_hot.preds.shape[0]
    model = _model(one_hot, "cuda", model_name="m")
    got = model.predict(-(-rows // BATCH), one_hot.source, hgc.DataReaderType_t.Raw, hgc.Check_t.Non,
                        slot_size_array=one_hot.slot_size_array)[:rows]
    assert rel_err(got, one_hot.preds) < FP32_TOL
