import dataclasses

import pytest

from hgc.errors import PlacementError
from hgc.ir.node import Attrs
from hgc.passes import plan_placement
from hgc.passes.context import PassContext
from hgc.passes.plan_placement import format_placement
from tests.passes._graphs import embedding, with_input

DIST = "DistributedSlotSparseEmbeddingHash"
LOCAL = "LocalizedSlotSparseEmbeddingHash"
ONE_HOT = "LocalizedSlotSparseEmbeddingOneHot"
HYBRID = "HybridSparseEmbedding"
MB = 2**20


def place(g, vvgpu=((0,),), batchsize=2048):
    ctx = PassContext(vvgpu=[list(r) for r in vvgpu], batchsize=batchsize)
    r = plan_placement.run(g, ctx)
    assert not r.changed and r.graph is g
    return ctx.plans["placement"], r.stats


def one_table(op=DIST, slots=5, nnz=2, vec=16, meta=None, **kw):
    g = with_input(sparse=[("keys", slots, nnz)], meta=meta)
    embedding(g, op, "keys", "emb", vec, **kw)
    return g


@pytest.mark.parametrize("opt, update, copies", [("Adam", "Global", 2), ("Adam", "LazyGlobal", 3),
                                                 ("AdaGrad", "Local", 1), ("MomentumSGD", "Global", 1),
                                                 ("Nesterov", "Global", 1), ("SGD", "Local", 0)])
def test_workspace_formula_per_optimizer(opt, update, copies):
    g = one_table(optimizer={"optimizer_type": opt, "update_type": update}, workspace=1)
    plan, stats = place(g)
    t = plan.table("emb")
    assert t.state_copies == copies and t.optimizer == opt and t.optimizer_source == "embedding"
    assert t.rows_fit == MB // ((1 + copies) * 4 * 16)
    (share,) = t.shares
    assert share.rows == t.rows_fit and share.bytes == t.rows_fit * (1 + copies) * 64
    assert stats == {"tables": 1, DIST: 1, "max_bytes_per_gpu": share.bytes}


def test_adam_vec16_one_megabyte_known_value():
    plan, _ = place(one_table(workspace=1))
    t = plan.table("emb")
    assert t.rows_fit == 5461 == (2**20) // ((1 + 2) * 4 * 16)
    assert (t.optimizer, t.update_type, t.optimizer_source) == ("Adam", "Global", "default")


def test_model_optimizer_is_used_when_the_embedding_has_none():
    g = one_table(meta={"optimizer": Attrs(optimizer_type="SGD", update_type="Local")}, workspace=3)
    t = place(g)[0].table("emb")
    assert (t.optimizer, t.optimizer_source, t.rows_fit) == ("SGD", "model", 3 * MB // 64)
    g = one_table(meta={"optimizer": Attrs(optimizer_type="SGD")}, optimizer={"optimizer_type": "AdaGrad"})
    assert place(g)[0].table("emb").optimizer == "AdaGrad"


def test_distributed_spreads_keys_over_all_gpus_rank_major():
    g = one_table(workspace=2, sizes=(100, 200, 300, 50, 7))
    plan, _ = place(g, vvgpu=((0, 1), (0, 1)))
    assert [(x.gpu, x.rank, x.device) for x in plan.gpus] == [(0, 0, 0), (1, 0, 1), (2, 1, 0), (3, 1, 1)]
    t = plan.table("emb")
    assert t.key_modulus == 4
    assert [s.gpu for s in t.shares] == [0, 1, 2, 3]
    assert all(s.rows == 2 * MB // 192 and s.rows_needed == 165 and s.slots == () for s in t.shares)  # ceil(657/4)


def test_localized_puts_slot_s_on_gpu_s_mod_g():
    g = one_table(LOCAL, slots=6, workspace=0, sizes=(10, 20, 30, 40, 50, 60))
    plan, _ = place(g, vvgpu=((0, 1), (2, 3)))
    t = plan.table("emb")
    assert [s.slots for s in t.shares] == [(0, 4), (1, 5), (2,), (3,)]
    assert [s.rows for s in t.shares] == [60, 80, 30, 40]
    assert [s.device for s in t.shares] == [0, 1, 2, 3]
    assert [s.bytes for s in t.shares] == [r * 3 * 4 * 16 for r in (60, 80, 30, 40)]
    # without sizes every GPU preallocates the workspace's rows
    plan, _ = place(one_table(LOCAL, slots=3, workspace=1), vvgpu=((0, 1),))
    assert [(s.slots, s.rows, s.rows_needed) for s in plan.table("emb").shares] == \
        [((0, 2), 5461, None), ((1,), 5461, None)]


def test_one_hot_ignores_the_workspace_and_needs_one_rank():
    g = one_table(ONE_HOT, slots=3, nnz=1, workspace=0, sizes=(1000, 3, 17),
                  optimizer={"optimizer_type": "SGD"})
    plan, _ = place(g, vvgpu=((0, 1),))
    t = plan.table("emb")
    assert [(s.slots, s.rows) for s in t.shares] == [((0, 2), 1017), ((1,), 3)]
    assert t.shares[0].bytes == 1017 * 4 * 16
    with pytest.raises(PlacementError, match=r"'emb'.*single node.*2 ranks"):
        place(g, vvgpu=((0,), (0,)))


def test_hybrid_records_the_inputs_of_the_runtime_split():
    g = one_table(HYBRID, slots=2, nnz=1, workspace=10, sizes=(100000, 3000), optimizer={"optimizer_type": "SGD"},
                  hybrid_embedding_param=Attrs(max_num_frequent_categories=2, p_dup_max=0.02))
    plan, _ = place(g, vvgpu=((0, 1, 2),), batchsize=999)
    t = plan.table("emb")
    h = t.hybrid
    assert h.total_categories == 103000 and h.batchsize == 999
    assert h.frequent_rows_max == 2 * 999 and h.infrequent_rows_per_gpu_max == 34334  # ceil(103000 / 3)
    assert dict(h.params)["p_dup_max"] == 0.02 and dict(h.params)["communication_type"] == "NVLink_SingleNode"
    assert all(s.rows == 1998 + 34334 and s.bytes == s.rows * 4 * 16 for s in t.shares)


def test_a_table_that_does_not_fit_names_table_gpu_and_rows():
    g = one_table(workspace=1, sizes=(4000, 4000, 3000, 1, 1))  # needs ceil(11002 / 2) = 5501 > 5461 per GPU
    with pytest.raises(PlacementError) as e:
        place(g, vvgpu=((0, 1),))
    msg = str(e.value)
    assert "'emb'" in msg and "GPU 0" in msg and "5501 rows" in msg and "5461 rows" in msg
    assert "must be at least 2" in msg
    place(g, vvgpu=((0, 1, 2),))  # 3668 rows per GPU fit


def test_localized_overflow_is_reported_on_the_gpu_that_overflows():
    g = one_table(LOCAL, slots=4, workspace=1, sizes=(100, 5000, 100, 800))
    with pytest.raises(PlacementError, match=r"'emb'.*5800 rows on GPU 1 \(rank 0, device 7\).*5461 rows"):
        place(g, vvgpu=((3, 7),))


def test_missing_sizes_or_room_are_placement_errors():
    with pytest.raises(PlacementError, match=r"'emb'.*workspace_size_per_gpu_in_mb = 0 leaves no room"):
        place(one_table(workspace=0))
    g = one_table(ONE_HOT, slots=2, nnz=1, workspace=0, sizes=(3, 4))
    node = g.node("emb")
    bad = dataclasses.replace(node, attrs=node.attrs.replace(slot_size_array=()))
    g.replace(["emb"], [bad])
    with pytest.raises(PlacementError, match=r"'emb'.*slot_size_array is required"):
        place(g)


def test_placement_text_per_rank():
    g = with_input(sparse=[("wide", 1, 1), ("deep", 3, 2)])
    embedding(g, DIST, "wide", "wide_emb", 1, workspace=1, optimizer={"optimizer_type": "SGD"})
    embedding(g, LOCAL, "deep", "deep_emb", 8, workspace=0, sizes=(11, 22, 33))
    plan, stats = place(g, vvgpu=((0, 1), (0, 1)))
    assert stats["tables"] == 2 and stats[DIST] == 1 and stats[LOCAL] == 1
    totals = plan.bytes_per_gpu()
    assert totals[0] == MB // 4 * 4 + 11 * 96  # wide: 2^18 rows of 4 bytes; deep slot 0: 11 rows of 96 bytes
    text = format_placement(plan)
    assert "rank 0" in text and "rank 1" in text
    assert "table wide_emb: DistributedSlotSparseEmbeddingHash" in text
    assert "GPU 3 (device 1): slots 2: rows 33" not in text  # slot 2 lives on GPU 2
    assert "GPU 2 (device 0): slots 2: rows 33 (needed 33)" in text
    assert "GPU 1 (device 1): keys with key % 4 == 1: rows 262144" in text
    assert f"GPU 0 (device 0): 2 table share(s), {totals[0]} bytes" in text
    only1 = format_placement(plan, rank=1)
    assert "rank 0" not in only1 and "GPU 3 (device 1)" in only1 and "GPU 0 (device 0)" not in only1
    with pytest.raises(ValueError, match="rank = 5"):
        format_placement(plan, rank=5)


def test_plan_is_frozen_plain_data():
    plan, _ = place(one_table(workspace=1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.tables = ()  # type: ignore[misc]
    assert isinstance(plan.tables, tuple) and isinstance(plan.tables[0].shares, tuple)
