from types import SimpleNamespace

import pytest

from hgc.config import config
from hgc.errors import GraphError
from hgc.ir.build import add_node
from hgc.ir.node import Node
from hgc.ir.types import B, TensorType
from hgc.passes import pipeline, validate
from hgc.passes.context import PassContext, PassResult
from hgc.passes.pipeline import DEFAULT_PIPELINE, format_pass_table, pass_names, run_pipeline
from tests.passes._graphs import embedding, mlp, ops_of, with_input

ORDER = ["Validate", "FuseReshapeConcat", "FuseInnerProductReLU", "GroupFusedInnerProduct", "DeadCodeElimination",
         "PlanEmbeddingPlacement", "PlanBuffers", "PlanPrecision"]


def model():
    g = with_input(dense_dim=13, sparse=[("keys", 4, 2)])
    embedding(g, "DistributedSlotSparseEmbeddingHash", "keys", "emb", 8, workspace=1)
    add_node(g, "Reshape", ["emb"], ["emb2d"], {"leading_dim": 32})
    add_node(g, "Concat", ["dense", "emb2d"], ["cat"], {"axis": 1})
    last = mlp(g, "cat", [16, 8, 4])
    add_node(g, "InnerProduct", [last], ["pred"], {"num_output": 1})
    add_node(g, "InnerProduct", [last], ["unused"], {"num_output": 2})
    add_node(g, "BinaryCrossEntropyLoss", ["pred", "label"], ["loss"])
    return g


def test_default_order_is_the_design_order():
    assert pass_names() == ORDER == [p.NAME for p in DEFAULT_PIPELINE]


def test_full_pipeline_fuses_groups_cleans_and_plans():
    ctx = PassContext(batchsize=64)
    res = run_pipeline(model(), ctx)
    assert [r.name for r in res.records] == ORDER
    assert ops_of(res.graph) == ["Input", "DistributedSlotSparseEmbeddingHash", "Reshape", "Concat",
                                 "GroupFusedInnerProduct", "InnerProduct", "BinaryCrossEntropyLoss"]
    assert res.graph.node("fc1").outputs == ("relu_fc1", "relu_fc2", "relu_fc3")
    rec = {r.name: r for r in res.records}
    assert rec["FuseInnerProductReLU"].stats["fusions"] == 3 and rec["FuseInnerProductReLU"].changed
    assert (rec["FuseInnerProductReLU"].nodes_before, rec["FuseInnerProductReLU"].nodes_after) == (13, 10)
    assert rec["GroupFusedInnerProduct"].stats["head"] == 1
    assert rec["DeadCodeElimination"].stats == {"removed": 1}
    assert set(res.plans) == {"placement", "buffers", "precision"}
    assert res.plans["placement"].table("emb").rows_fit == 2**20 // (3 * 4 * 8)
    assert ctx.counters["FuseInnerProductReLU.fusions"] == 3
    assert ctx.counters["DeadCodeElimination.removed"] == 1


def test_counters_also_go_to_the_config():
    before = config.counters["FuseInnerProductReLU.fusions"]
    run_pipeline(model(), PassContext())
    assert config.counters["FuseInnerProductReLU.fusions"] == before + 3


def test_disabled_passes_and_stop_after():
    res = run_pipeline(model(), PassContext(disabled_passes=frozenset({"FuseInnerProductReLU", "plan_buffers"})))
    assert "FuseInnerProductReLU" not in [r.name for r in res.records]
    assert "FusedInnerProduct" not in ops_of(res.graph) and "GroupFusedInnerProduct" not in ops_of(res.graph)
    assert "buffers" not in res.plans and "precision" in res.plans
    res = run_pipeline(model(), PassContext(stop_after="deadcodeelimination"))
    assert [r.name for r in res.records] == ORDER[:5] and res.plans == {}
    res = run_pipeline(model(), PassContext(stop_after="GroupFusedInnerProduct",
                                            disabled_passes=frozenset({"GroupFusedInnerProduct"})))
    assert [r.name for r in res.records] == ORDER[:3]


@pytest.mark.parametrize("field", ["disabled_passes", "stop_after"])
def test_unknown_pass_names_list_the_known_ones(field):
    value = frozenset({"FuseEverything"}) if field == "disabled_passes" else "FuseEverything"
    with pytest.raises(ValueError, match=r"unknown pass 'FuseEverything'; known passes: Validate, .*PlanPrecision"):
        run_pipeline(model(), PassContext(**{field: value}))


def _breaker(graph, ctx):
    g = graph.copy()
    g.add(Node("ReLU", ("dense",), ("bad",), types=(TensorType((B, 4)),)))
    return PassResult(g, True, {})


def test_verify_after_each_pass_names_the_pass():
    broken = SimpleNamespace(NAME="Breaker", run=_breaker)
    with pytest.raises(GraphError, match=r"after pass Breaker: verify: ReLU layer 'bad'"):
        run_pipeline(model(), PassContext(), passes=[validate, broken])
    res = run_pipeline(model(), PassContext(verify=False), passes=[broken])
    assert "bad" in res.graph


def test_instruments_see_every_pass():
    seen = []
    ctx = PassContext(instruments=[lambda name, before, result: seen.append((name, len(before),
                                                                            len(result.graph)))])
    run_pipeline(model(), ctx)
    assert [s[0] for s in seen] == ORDER
    assert seen[2][1:] == (13, 10)


def test_dump_dir_holds_ir_dot_and_placement(tmp_path):
    ctx = PassContext(dump_dir=tmp_path / "dump", disabled_passes=frozenset({"PlanBuffers"}))
    run_pipeline(model(), ctx)
    files = sorted(p.name for p in (tmp_path / "dump").iterdir())
    expected = ["000_Initial"] + [f"{i:03d}_{n}" for i, n in enumerate(ORDER, 1) if n != "PlanBuffers"]
    assert files == sorted([f"{s}.ir.txt" for s in expected] + [f"{s}.dot" for s in expected] + ["placement.txt"])
    ir = (tmp_path / "dump" / "003_FuseInnerProductReLU.ir.txt").read_text()
    assert "FusedInnerProduct(cat) -> relu_fc1" in ir
    assert (tmp_path / "dump" / "004_GroupFusedInnerProduct.dot").read_text().startswith("digraph")
    assert "table emb: DistributedSlotSparseEmbeddingHash" in (tmp_path / "dump" / "placement.txt").read_text()


def test_pass_table():
    res = run_pipeline(model(), PassContext())
    text = format_pass_table(res.records)
    lines = text.splitlines()
    assert lines[0].split() == ["pass", "ms", "changed", "nodes", "fusions", "stats"]
    row = next(line for line in lines if line.startswith("FuseInnerProductReLU"))
    assert "yes" in row and "13 -> 10" in row and row.split()[6] == "3"
    assert "removed=1" in next(line for line in lines if line.startswith("DeadCodeElimination"))
    assert lines[-1].startswith("8 pass(es)")


def test_module_names_are_accepted():
    assert pipeline.resolve_pass("fuse_fc_relu") == "FuseInnerProductReLU"
