import itertools

import numpy as np
import pytest

from hgc.ir.build import add_node
from hgc.passes import plan_buffers
from hgc.passes.context import PassContext
from tests.passes._graphs import embedding, mlp, with_input


def chain():
    """data, fc1, relu_fc1, fc2, relu_fc2, fc3, loss: 7 nodes, 14 steps."""
    g = with_input(dense_dim=13)
    last = mlp(g, "dense", [8, 8])
    add_node(g, "InnerProduct", [last], ["fc3"], {"num_output": 1})
    add_node(g, "BinaryCrossEntropyLoss", ["fc3", "label"], ["loss"])
    return g


def run(g, batchsize=6, vvgpu=((0, 1),)):
    ctx = PassContext(batchsize=batchsize, vvgpu=[list(r) for r in vvgpu])
    r = plan_buffers.run(g, ctx)
    assert not r.changed and r.graph is g
    return ctx.plans["buffers"], r.stats


def test_lifetimes_follow_forward_then_reverse_backward():
    plan, _ = run(chain())
    got = {(lt.tensor, lt.kind): (lt.start, lt.end) for lt in plan.lifetimes}
    assert got == {
        ("fc1", "activation"): (1, 11), ("relu_fc1", "activation"): (2, 10), ("fc2", "activation"): (3, 9),
        ("relu_fc2", "activation"): (4, 8), ("fc3", "activation"): (5, 7), ("loss", "activation"): (6, 7),
        ("fc1", "gradient"): (11, 12), ("relu_fc1", "gradient"): (10, 11), ("fc2", "gradient"): (9, 10),
        ("relu_fc2", "gradient"): (8, 9), ("fc3", "gradient"): (7, 8)}
    assert plan.steps == 14 and plan.batch_per_gpu == 3  # 6 samples over 2 GPUs


def test_reuse_counts_and_bytes_at_the_batch_size():
    plan, stats = run(chain())
    b = 3
    assert stats == {"buffers_before": 11, "buffers_after": 7, "reused": 4,
                     "bytes_before": 264 * b + 4, "bytes_after": 164 * b + 4}
    # gradients take the buffers of activations whose last reader's backward is over
    assert plan.buffer_of("relu_fc1", "gradient") == plan.buffer_of("fc2", "activation")
    assert plan.buffer_of("fc1", "gradient") == plan.buffer_of("relu_fc1", "activation")


def _random_dag(rng):
    g = with_input(dense_dim=5)
    tensors = ["dense"]
    for i in range(12):
        k = int(rng.integers(1, 3))
        picks = [tensors[j] for j in rng.choice(len(tensors), size=min(k, len(tensors)), replace=False)]
        width = int(rng.integers(1, 9))
        if len(picks) == 1:
            add_node(g, "InnerProduct", picks, [f"t{i}"], {"num_output": width})
        else:
            add_node(g, "InnerProduct", [picks[0]], [f"a{i}"], {"num_output": width})
            add_node(g, "InnerProduct", [picks[1]], [f"b{i}"], {"num_output": width})
            add_node(g, "Add", [f"a{i}", f"b{i}"], [f"t{i}"])
        tensors.append(f"t{i}")
    add_node(g, "InnerProduct", [tensors[-1]], ["pred"], {"num_output": 1})
    add_node(g, "BinaryCrossEntropyLoss", ["pred", "label"], ["loss"])
    return g


@pytest.mark.parametrize("seed", range(5))
def test_buffers_never_hold_two_live_tensors(seed):
    g = _random_dag(np.random.default_rng(seed))
    plan, stats = run(g, batchsize=21, vvgpu=((0, 1, 2),))
    by_buffer = {}
    for lt in plan.lifetimes:
        assert plan.buffer_bytes[lt.buffer] >= lt.bytes
        by_buffer.setdefault(lt.buffer, []).append(lt)
    for lts in by_buffer.values():
        lts.sort(key=lambda lt: lt.start)
        for a, b in itertools.pairwise(lts):
            assert a.end < b.start, (a, b)
    assert stats["bytes_after"] <= stats["bytes_before"]
    assert stats["buffers_after"] < stats["buffers_before"]


def test_batch_must_split_over_the_gpus():
    with pytest.raises(ValueError, match=r"batchsize = 7 .* 2 GPUs"):
        run(chain(), batchsize=7)


def test_outputs_read_by_their_own_backward_live_until_it():
    # FusedInnerProduct with ReLU, Softmax, a group of two, a two-output Interaction whose alias feeds on
    g = with_input(dense_dim=6, sparse=[("keys", 3, 1)])
    embedding(g, "DistributedSlotSparseEmbeddingHash", "keys", "emb", 4, workspace=1)
    add_node(g, "FusedInnerProduct", ["dense"], ["fc1"], {"num_output": 5, "act_type": "Relu"})
    add_node(g, "InnerProduct", ["fc1"], ["fc1n"], {"num_output": 5})
    add_node(g, "Softmax", ["fc1n"], ["sm"])
    add_node(g, "GroupFusedInnerProduct", ["sm"], ["m1", "m2"],
             {"num_outputs": (7, 4), "activations": ("Relu", "Relu")})
    add_node(g, "Interaction", ["m2", "emb"], ["inter", "inter_buf"], {"num_tops": 2})
    add_node(g, "InnerProduct", ["inter_buf"], ["top"], {"num_output": 3})
    add_node(g, "InnerProduct", ["top"], ["logit"], {"num_output": 1})
    add_node(g, "BinaryCrossEntropyLoss", ["logit", "label"], ["loss"])
    plan, _ = run(g, batchsize=4, vvgpu=((0,),))
    nodes = g.nodes()
    back = 2 * len(nodes) - 1
    pos = {n.name: i for i, n in enumerate(nodes)}
    producer = {t: n.name for n in nodes for t in n.outputs}
    life = {lt.tensor: (lt.start, lt.end) for lt in plan.lifetimes if lt.kind == "activation"}
    for t in ("fc1", "sm", "m1", "m2", "inter"):  # their producers' backwards read them
        assert life[t] == (pos[producer[t]], back - pos[producer[t]]), t
    first_reader = {t: min(pos[n.name] for n in nodes if t in n.inputs) for t in ("fc1n", "top", "emb")}
    for t, r in first_reader.items():  # the others end at their first reader's backward, as before
        assert life[t][1] == back - r, t
    for a, b in itertools.combinations(plan.lifetimes, 2):  # sharing still never overlaps
        if a.buffer == b.buffer:
            assert a.end < b.start or b.end < a.start, (a, b)
