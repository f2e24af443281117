"""placement.txt for several ranks: each table's GPUs and exchanges, hash index sizes, per-GPU and per-rank
memory."""
from __future__ import annotations

from hgc.passes import plan_placement
from hgc.passes.context import PassContext
from hgc.passes.plan_placement import format_placement, hash_index_bytes
from tests.passes._graphs import embedding, with_input


def placed(vvgpu: list[list[int]], batchsize: int = 1536):
    g = with_input(sparse=[("wide", 1, 1), ("deep", 3, 2), ("oh", 2, 1)])
    embedding(g, "DistributedSlotSparseEmbeddingHash", "wide", "wide_emb", 1, workspace=1,
              optimizer={"optimizer_type": "SGD"})
    embedding(g, "LocalizedSlotSparseEmbeddingHash", "deep", "deep_emb", 8, workspace=0, sizes=(11, 22, 33))
    embedding(g, "HybridSparseEmbedding", "oh", "hy", 8, workspace=1, sizes=(100, 200),
              optimizer={"optimizer_type": "SGD"})
    ctx = PassContext(vvgpu=vvgpu, batchsize=batchsize)
    plan_placement.run(g, ctx)
    return ctx.plans["placement"]


def test_exchanges_indexes_and_rank_totals():
    plan = placed([[0, 1], [0]])
    assert plan.batchsize == 1536
    wide = plan.table("wide_emb")
    assert hash_index_bytes(wide, wide.shares[0]) == 16 * 2 ** 19  # 2^18 rows → 2^19 probe slots of 16 bytes
    deep = plan.table("deep_emb")
    assert [hash_index_bytes(deep, s) for s in deep.shares] == [16 * 32, 16 * 64, 16 * 128]
    assert hash_index_bytes(plan.table("hy"), plan.table("hy").shares[0]) == 0
    text = format_placement(plan)
    assert "on GPU(s) [0, 1, 2]; exchange: forward reduce-scatter of a 1536×1×1 partial-sum buffer (6144 bytes" in text
    assert "forward all-to-all (at most 49152 bytes sent, 49152 received per GPU)" in text  # 1536·1·8·4, 512·3·8·4
    assert "frequent gradients all-reduced (at most 9600 bytes)" in text
    assert "GPU 2 (device 0): slots 2: rows 33 (needed 33), bytes 3168 (0.00 MiB); hash index 2048 bytes" in text
    totals = plan.bytes_per_gpu()
    index2 = 16 * 2 ** 19 + 2048
    assert f"GPU 2 (device 0): 3 table share(s), {totals[2]} bytes" in text
    assert f"with hash indexes {totals[2] + index2} bytes" in text
    assert f"rank 1 total: {totals[2] + index2} bytes" in text and "on 1 GPU(s)" in text
    assert "rank 0 total:" in text and "on 2 GPU(s)" in text


def test_one_gpu_exchanges_nothing():
    text = format_placement(placed([[0]]))
    assert text.count("exchange: none (one GPU)") == 3
