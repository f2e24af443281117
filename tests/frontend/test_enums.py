import pytest

import hgc
from hgc.frontend.enums import ALL_ENUMS, HugeCTREnum, to_enum


def test_every_enum_is_exported_and_values_are_names():
    for name, cls in ALL_ENUMS.items():
        assert getattr(hgc, name) is cls and issubclass(cls, HugeCTREnum)
        for member in cls:
            assert member.value == member.name, member


def test_repr_like_hugectr():
    assert repr(hgc.Layer_t.InnerProduct) == "Layer_t.InnerProduct" == str(hgc.Layer_t.InnerProduct)


def test_to_enum():
    assert to_enum(hgc.Update_t, hgc.Update_t.Local, "update_type", "f()") is hgc.Update_t.Local
    assert to_enum(hgc.Update_t, "LazyGlobal", "update_type", "f()") is hgc.Update_t.LazyGlobal
    assert to_enum(hgc.Optimizer_t, "Adagrad", "optimizer_type", "f()") is hgc.Optimizer_t.AdaGrad
    with pytest.raises(ValueError, match=r"f\(\): argument 'update_type' = 'global' is not allowed: must be one of "
                                         r"Update_t.Local, Update_t.Global, Update_t.LazyGlobal"):
        to_enum(hgc.Update_t, "global", "update_type", "f()")
    with pytest.raises(ValueError, match="'check_type' = Check_t.Sum"):
        to_enum(hgc.DataReaderType_t, hgc.Check_t.Sum, "check_type", "f()")


def test_hugectr_member_sets():
    assert [m.name for m in hgc.MetricsType] == ["AUC", "AverageLoss", "HitRate", "NDCG", "SMAPE"]
    assert [m.name for m in hgc.FcPosition_t] == ["Non", "Head", "Body", "Tail", "Isolated"]
    assert [m.name for m in hgc.DataReaderType_t] == ["Norm", "Raw", "Parquet", "RawAsync"]
    assert {m.name for m in hgc.Embedding_t} == {"DistributedSlotSparseEmbeddingHash",
                                                  "LocalizedSlotSparseEmbeddingHash",
                                                  "LocalizedSlotSparseEmbeddingOneHot", "HybridSparseEmbedding"}
    assert {"Adam", "AdaGrad", "MomentumSGD", "Nesterov", "SGD"} <= {m.name for m in hgc.Optimizer_t}
