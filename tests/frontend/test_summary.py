from fractions import Fraction

import pytest

from hgc.config import config
from hgc.frontend import target as target_module
from hgc.frontend.summary import dim_str, format_summary, type_str
from hgc.frontend.target import active_target
from hgc.ir.types import B, Batch, TensorType
from tests.frontend.classic_models import deepfm, dlrm, wdl


def test_dims():
    assert dim_str(B) == "None" and dim_str(B * 26) == "None*26" and dim_str(B / 2) == "None/2"
    assert dim_str(Batch(Fraction(3, 2))) == "None*3/2" and dim_str(7) == "7"
    assert type_str(TensorType((B, 26, 2), "uint32", sparse=True)) == "(None, 26, 2) sparse uint32"
    assert type_str(TensorType((1, 1))) == "(1, 1)"
    assert type_str(TensorType((B, 4), "float16")) == "(None, 4) float16"


def rows(text):
    """Table rows as lists of cells, split on runs of two or more spaces."""
    import re

    return [re.split(r"\s{2,}", ln.strip()) for ln in text.splitlines() if ln and ln[0] not in "=-"]


def test_wdl_summary_rows(capsys):
    with config.patch(target="cpu"):
        wdl().summary()
    out = capsys.readouterr().out
    assert out.splitlines()[0].strip("=").strip() == "Model Summary (target: cpu)"
    table = rows(out)
    assert table[0] == ["Layer Type", "Input Name", "Output Name", "Output Shape"]
    assert table[1] == ["Input", "-", "label", "(None, 1)"]
    assert ["dense", "(None, 13)"] in table and ["wide_data", "(None, 1, 2) sparse uint32"] in table
    assert ["DistributedSlotSparseEmbeddingHash", "deep_data", "sparse_embedding1", "(None, 26, 16)"] in table
    assert ["Reshape", "sparse_embedding1", "reshape1", "(None, 416)"] in table
    assert ["Concat", "reshape1", "concat1", "(None, 429)"] in table
    assert ["BinaryCrossEntropyLoss", "add1", "loss", "(1, 1)"] in table
    layer_types = [r[0] for r in table[1:] if len(r) == 4]
    assert layer_types[:4] == ["Input", "DistributedSlotSparseEmbeddingHash", "DistributedSlotSparseEmbeddingHash",
                               "Reshape"]


def test_summary_shows_batch_multiples_and_multiple_outputs():
    text = format_summary(deepfm().graph, "cpu")
    assert ["Reshape", "sparse_embedding1", "reshape1", "(None*26, 11)"] in rows(text)
    assert ["Slice", "reshape1", "slice11", "(None*26, 10)"] in rows(text)
    assert ["slice12", "(None*26, 1)"] in rows(text)
    text = format_summary(dlrm().graph, "cuda")
    assert "Model Summary (target: cuda)" in text.splitlines()[0]
    assert ["Interaction", "fc3", "interaction1", "(None, 608)"] in rows(text)
    assert ["sparse_embedding1", "interaction1_grad", "(None, 608)"] in rows(text)


def test_active_target(monkeypatch):
    with config.patch(target="cuda"):
        assert active_target() == "cuda"
    with config.patch(target="cpu"):
        assert active_target() == "cpu"
    with config.patch(target="auto"):
        monkeypatch.setattr(target_module, "gpu_visible", lambda: True)
        assert active_target() == "cuda"
        monkeypatch.setattr(target_module, "gpu_visible", lambda: False)
        assert active_target() == "cpu"
    with config.patch(target="tpu"), pytest.raises(ValueError, match="'tpu' is not allowed"):
        active_target()
