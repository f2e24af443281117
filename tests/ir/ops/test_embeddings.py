import pytest

from hgc.ir.build import check_attrs
from hgc.ir.node import Attrs
from hgc.ir.ops.embeddings import EMBEDDING_TYPES, max_vocabulary_size_global, state_copies, workspace_for
from hgc.ir.registry import get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import infer
from tests.ir.ops._model_ops import round_trip, shape_error

DIST, LOC, ONEHOT, HYBRID = EMBEDDING_TYPES
KEYS = TensorType((B, 3, 2), "int64", sparse=True)
ONE_HOT_KEYS = TensorType((B, 3, 1), "uint32", sparse=True)
BASE = {"workspace_size_per_gpu_in_mb": 8, "embedding_vec_size": 16, "combiner": "sum"}


@pytest.mark.parametrize("op", EMBEDDING_TYPES)
def test_infer(op):
    attrs = {**BASE, "slot_size_array": (5, 7, 11)}
    assert infer(op, attrs, [ONE_HOT_KEYS]) == [TensorType((B, 3, 16))]
    assert get_op(op).kind == "embedding" and get_op(op).forward is None


def test_hash_embeddings_take_multi_hot_without_slot_sizes():
    for op in (DIST, LOC):
        assert infer(op, BASE, [KEYS]) == [TensorType((B, 3, 16))]


def test_input_must_be_sparse():
    shape_error(DIST, {"dense": TensorType((B, 3, 2))}, BASE, "emb", r"must be a sparse input tensor")


@pytest.mark.parametrize("op", [ONEHOT, HYBRID])
def test_one_hot_and_hybrid_rules(op):
    shape_error(op, {"keys": ONE_HOT_KEYS}, BASE, "emb", rf"{op} requires slot_size_array")
    shape_error(op, {"keys": KEYS}, {**BASE, "slot_size_array": (5, 7, 11)}, "emb", r"one-hot.*max nnz 2")


@pytest.mark.parametrize("op", EMBEDDING_TYPES)
def test_slot_size_array_length(op):
    shape_error(op, {"keys": ONE_HOT_KEYS}, {**BASE, "slot_size_array": (5, 7)}, "emb",
                r"slot_size_array has 2 entries but the input has 3 slots")


def test_hybrid_needs_sgd():
    attrs = {**BASE, "slot_size_array": (5, 7, 11), "optimizer": {"optimizer_type": "Adam"}}
    shape_error(HYBRID, {"keys": ONE_HOT_KEYS}, attrs, "emb", r"only with SGD")
    assert infer(HYBRID, {**attrs, "optimizer": {"optimizer_type": "SGD"}}, [ONE_HOT_KEYS])


@pytest.mark.parametrize("change,pattern", [
    ({"embedding_vec_size": 0}, r"'embedding_vec_size' = 0"),
    ({"embedding_vec_size": 1025}, r"\[1, 1024\]"),
    ({"combiner": "max"}, r"'combiner' = 'max'"),
    ({"workspace_size_per_gpu_in_mb": -1}, r"'workspace_size_per_gpu_in_mb' = -1"),
    ({"slot_size_array": (3, 0)}, r"'slot_size_array'"),
    ({"optimizer": {"optimizer_type": "Lion"}}, r"optimizer_type must be one of"),
    ({"optimizer": {"optimizer_type": "SGD", "update_type": "LazyGlobal"}}, r"LazyGlobal.*only with Adam"),
    ({"optimizer": {"optimizer_type": "SGD", "lr": 1}}, r"unknown fields \['lr'\]"),
    ({"hybrid_embedding_param": {"communication_type": "PCIe"}}, r"communication_type"),
])
def test_attribute_rules(change, pattern):
    with pytest.raises(ValueError, match=pattern):
        check_attrs(DIST, {**BASE, **change})


def test_state_copies():
    assert [state_copies(o) for o in ("Adam", "AdaGrad", "MomentumSGD", "Nesterov", "RMSProp", "Ftrl", "SGD")] \
        == [2, 1, 1, 1, 1, 2, 0]
    assert state_copies("Adam", "LazyGlobal") == 3 and state_copies("Adam", "Local") == 2
    with pytest.raises(ValueError, match="optimizer_type 'Lion'"):
        state_copies("Lion")


def test_max_vocabulary_size():
    attrs = check_attrs(DIST, {**BASE, "workspace_size_per_gpu_in_mb": 10, "embedding_vec_size": 12})
    # default optimizer Adam: 2 states → 10 MiB / (3·4·12 bytes)
    assert max_vocabulary_size_global(attrs) == 10 * 2**20 // 144
    assert max_vocabulary_size_global(attrs, world_size=4) == 4 * (10 * 2**20 // 144)
    sgd = attrs.replace(optimizer=Attrs(optimizer_type="SGD", update_type="Local"))
    assert max_vocabulary_size_global(sgd) == 10 * 2**20 // 48
    assert max_vocabulary_size_global(attrs, model_optimizer={"optimizer_type": "Adam",
                                                              "update_type": "LazyGlobal"}) == 10 * 2**20 // 192
    assert workspace_for(10 * 2**20 // 144, 12, 2) == 10


def test_json_round_trips():
    _, written = round_trip(LOC, {**BASE, "combiner": "mean", "slot_size_array": (5, 7, 11)})
    assert written == {"sparse_embedding_hparam": {
        "workspace_size_per_gpu_in_mb": 8, "max_vocabulary_size_global": 8 * 2**20 // (3 * 4 * 16),
        "embedding_vec_size": 16, "combiner": "mean", "slot_size_array": [5, 7, 11]}}
    hp = {"max_num_frequent_categories": 2, "max_num_infrequent_samples": -1, "p_dup_max": 0.01,
          "max_all_reduce_bandwidth": 1.3e11, "max_all_to_all_bandwidth": 1.9e11,
          "efficiency_bandwidth_ratio": 1.0, "communication_type": "IB_NVLink_Hier",
          "hybrid_embedding_type": "Distributed"}
    # the optimizer block is the JSON module's; the hparam block sizes with the embedding's own optimizer
    _, written = round_trip(HYBRID, {**BASE, "slot_size_array": (5, 7, 11), "hybrid_embedding_param": hp})
    assert written["sparse_embedding_hparam"]["communication_type"] == "IB_NVLink_Hierarchical"
    sgd = check_attrs(HYBRID, {**BASE, "slot_size_array": (5, 7, 11), "optimizer": {"optimizer_type": "SGD"}})
    assert get_op(HYBRID).json_write(sgd)["sparse_embedding_hparam"]["max_vocabulary_size_global"] == 8 * 2**20 // 64


def test_json_reads_hugectr_entries():
    op = get_op(DIST)
    entry = {"type": DIST, "bottom": "keys", "top": "emb",
             "sparse_embedding_hparam": {"max_vocabulary_size_per_gpu": 1000, "embedding_vec_size": 16,
                                         "combiner": 1},
             "optimizer": {"type": "SGD", "update_type": "Local"}}
    assert op.json_read(entry) == {"embedding_vec_size": 16, "combiner": "mean",
                                   "workspace_size_per_gpu_in_mb": 1}
    written = get_op(HYBRID).json_write(check_attrs(HYBRID, {**BASE, "slot_size_array": (2, 3, 4)}))
    assert written["sparse_embedding_hparam"]["communication_type"] == "NVLink_SingleNode"
    assert written["sparse_embedding_hparam"]["max_all_to_all_bandwidth"] == 2.6e11
