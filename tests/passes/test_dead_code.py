from hgc.ir.build import add_node
from hgc.passes import dead_code
from hgc.passes.context import PassContext
from tests.passes._graphs import embedding, mlp, ops_of, with_input


def test_branches_that_reach_no_loss_are_removed_readers_first():
    g = with_input(dense_dim=6, sparse=[("keys", 2, 1), ("unused_keys", 1, 1)])
    embedding(g, "DistributedSlotSparseEmbeddingHash", "keys", "emb", 3)
    embedding(g, "DistributedSlotSparseEmbeddingHash", "unused_keys", "idle_emb", 3)  # read by no loss: kept
    add_node(g, "Reshape", ["emb"], ["emb2d"], {"leading_dim": 6})
    add_node(g, "Concat", ["dense", "emb2d"], ["cat"], {"axis": 1})
    last = mlp(g, "cat", [4])
    add_node(g, "InnerProduct", [last], ["pred"], {"num_output": 1})
    add_node(g, "BinaryCrossEntropyLoss", ["pred", "label"], ["loss"])
    # dead: a two-node branch off a live tensor, and a branch off the idle embedding
    add_node(g, "InnerProduct", [last], ["probe"], {"num_output": 3})
    add_node(g, "ReLU", ["probe"], ["probe_relu"])
    add_node(g, "Reshape", ["idle_emb"], ["idle2d"], {"leading_dim": 3})
    r = dead_code.run(g, PassContext())
    assert r.changed and r.stats == {"removed": 3}
    names = [n.name for n in r.graph.nodes()]
    assert "probe" not in names and "probe_relu" not in names and "idle2d" not in names
    assert {"data", "emb", "idle_emb", "loss", "pred"} <= set(names)
    assert len(g) == len(r.graph) + 3  # the input graph is untouched


def test_nothing_dead_and_no_loss_leave_the_graph_alone():
    g = with_input(dense_dim=4)
    add_node(g, "InnerProduct", ["dense"], ["pred"], {"num_output": 1})
    add_node(g, "BinaryCrossEntropyLoss", ["pred", "label"], ["loss"])
    r = dead_code.run(g, PassContext())
    assert not r.changed and r.stats == {"removed": 0} and ops_of(r.graph) == ops_of(g)
    g = with_input(dense_dim=4)
    add_node(g, "InnerProduct", ["dense"], ["pred"], {"num_output": 1})  # an inference graph
    r = dead_code.run(g, PassContext())
    assert not r.changed and r.stats == {"removed": 0, "no_loss": 1} and len(r.graph) == 2


def test_removing_dead_branches_leaves_loss_and_gradients_unchanged():
    import numpy as np

    from tests.passes._graphs import evaluate, random_weights, rel_err

    g = with_input(dense_dim=7)
    last = mlp(g, "dense", [5, 3])
    add_node(g, "InnerProduct", [last], ["pred"], {"num_output": 1})
    add_node(g, "BinaryCrossEntropyLoss", ["pred", "label"], ["loss"])
    add_node(g, "InnerProduct", ["relu_fc1"], ["probe"], {"num_output": 4})  # off a live tensor, to no loss
    add_node(g, "Sigmoid", ["probe"], ["probe_sig"])
    r = dead_code.run(g, PassContext())
    assert r.stats == {"removed": 2}
    rng = np.random.default_rng(11)
    weights = random_weights(g, rng)
    feeds = {"label": (rng.random((9, 1)) < 0.5).astype(np.float64), "dense": rng.uniform(-1, 1, (9, 7))}
    before, g_before = evaluate(g, feeds, weights, {"loss": np.ones((1, 1))})
    kept = {k: v for k, v in weights.items() if k in r.graph}
    after, g_after = evaluate(r.graph, feeds, kept, {"loss": np.ones((1, 1))})
    assert rel_err(after["loss"], before["loss"]) == 0.0
    for t in ("dense", "relu_fc1", "pred"):
        assert rel_err(g_after[t], g_before[t]) < 1e-15, t
