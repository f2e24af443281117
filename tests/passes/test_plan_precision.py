import pytest

from hgc.ir.build import add_node
from hgc.passes import plan_precision
from hgc.passes.context import PassContext
from hgc.passes.plan_precision import CastPoint
from tests.passes._graphs import embedding, with_input


def model(loss="BinaryCrossEntropyLoss"):
    g = with_input(dense_dim=6, label_dim=1, sparse=[("keys", 3, 2)])
    embedding(g, "DistributedSlotSparseEmbeddingHash", "keys", "emb", 4, workspace=1)
    add_node(g, "Reshape", ["emb"], ["emb2d"], {"leading_dim": 12})
    add_node(g, "InnerProduct", ["dense"], ["fa"], {"num_output": 12})
    add_node(g, "Sub", ["emb2d", "fa"], ["diff"])  # fp32-only in HugeCTR
    add_node(g, "InnerProduct", ["diff"], ["pred"], {"num_output": 2 if loss == "CrossEntropyLoss" else 1})
    add_node(g, loss, ["pred", "label"], ["loss"])
    return g


def plan(g, **kw):
    ctx = PassContext(**kw)
    r = plan_precision.run(g, ctx)
    assert not r.changed and r.graph is g
    return ctx.plans["precision"], r.stats


def test_full_precision_by_default():
    p, stats = plan(model())
    assert p.compute_dtype == "float32" and p.casts == ()
    assert set(p.values()) == {"float32", "int64"}  # the keys stay int64
    assert p["keys"] == "int64" and stats["casts"] == 0 and stats["low_precision_tensors"] == 0


def test_mixed_precision_uses_half_where_allowed_and_casts_around_fp32_only_ops():
    g = model()
    p, stats = plan(g, use_mixed_precision=True)
    assert p.compute_dtype == "float16"
    assert p["label"] == "float32" and p["loss"] == "float32"
    assert p["dense"] == "float16" and p["emb"] == "float16" and p["emb2d"] == "float16"
    assert p["fa"] == "float16" and p["diff"] == "float32" and p["pred"] == "float16"
    assert p.node_dtype("diff") == "float32" and p.node_dtype("loss") == "float32"
    assert p.casts == (CastPoint("emb2d", "diff", 0, "float16", "float32"),
                       CastPoint("fa", "diff", 1, "float16", "float32"),
                       CastPoint("diff", "pred", 0, "float32", "float16"))
    assert stats == {"low_precision_tensors": 5, "float32_tensors": 3, "casts": 3}
    assert all(t.dtype in ("float32", "int64") for t in g.tensors().values())  # node types are not rewritten


def test_fp32_only_loss_reads_its_prediction_in_float32():
    p, _ = plan(model("CrossEntropyLoss"), use_mixed_precision=True)
    assert CastPoint("pred", "loss", 0, "float16", "float32") in p.casts
    assert not any(c.tensor == "label" for c in p.casts)


def test_bfloat16_compute_dtype_and_tf32_flag():
    p, _ = plan(model(), compute_dtype="bfloat16")
    assert p.compute_dtype == "bfloat16" and p["fa"] == "bfloat16" and p["label"] == "float32"
    p, _ = plan(model(), use_mixed_precision=True, compute_dtype="bfloat16")
    assert p["emb"] == "bfloat16"
    assert plan(model(), enable_tf32_compute=True)[0].tf32
    assert not plan(model(), compute_dtype="float16", enable_tf32_compute=True)[0].tf32


def test_user_cast_reads_what_it_gets():
    g = with_input(dense_dim=4)
    add_node(g, "Cast", ["dense"], ["half"])
    add_node(g, "InnerProduct", ["half"], ["out"], {"num_output": 2})
    p, _ = plan(g, use_mixed_precision=True)
    assert p["half"] == "float16" and p.casts == ()


def test_unknown_compute_dtype_is_rejected():
    with pytest.raises(ValueError, match=r"compute_dtype = 'float8'"):
        plan(model(), compute_dtype="float8")


def test_bfloat16_keeps_the_dense_input_float32_and_converts_for_its_readers():
    p, _ = plan(model(), use_mixed_precision=True, compute_dtype="bfloat16")
    assert p["dense"] == "float32" and p["fa"] == "bfloat16"
    assert CastPoint("dense", "fa", 0, "float32", "bfloat16") in p.casts
    p16, _ = plan(model(), use_mixed_precision=True)
    assert p16["dense"] == "float16" and not any(c.tensor == "dense" for c in p16.casts)


def weighted():
    g = with_input(dense_dim=8)
    add_node(g, "InnerProduct", ["dense"], ["a"], {"num_output": 6})
    add_node(g, "BatchNorm", ["a"], ["bn"], {"factor": 0.9, "eps": 1e-5})
    add_node(g, "MultiCross", ["bn"], ["x1"], {"num_layers": 1})
    add_node(g, "MultiCross", ["x1"], ["x2"], {"num_layers": 1, "projection_dim": 2})
    add_node(g, "GroupFusedInnerProduct", ["x2"], ["h1", "h2"],
             {"num_outputs": (5, 1), "activations": ("Relu", "Non")})
    add_node(g, "BinaryCrossEntropyLoss", ["h2", "label"], ["loss"])
    return g


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_every_weighted_op_computes_in_the_low_dtype(dtype):
    p, stats = plan(weighted(), use_mixed_precision=True, compute_dtype=dtype)
    for node in ("a", "bn", "x1", "x2"):
        assert p.node_dtype(node) == dtype and p[node] == dtype
    group = next(n for n in weighted().nodes() if n.op == "GroupFusedInnerProduct")
    assert p.node_dtype(group.name) == dtype and p["h1"] == p["h2"] == dtype
    assert p.node_dtype("loss") == "float32" and p["loss"] == "float32"
    assert stats["casts"] == (1 if dtype == "bfloat16" else 0)  # the dense input under bf16


def test_solver_opt_in_selects_the_compute_dtype():
    from hgc.frontend.solver import CreateSolver

    s = CreateSolver(use_mixed_precision=True, hgc_low_precision="bf16")
    assert s.compute_dtype == "bfloat16" and s.hgc_low_precision == "bfloat16"
    assert CreateSolver(use_mixed_precision=True).compute_dtype == "float16"
    assert CreateSolver(use_mixed_precision=True, hgc_low_precision="BFloat16").compute_dtype == "bfloat16"
    assert CreateSolver().compute_dtype == "float32"
    p, _ = plan(model(), use_mixed_precision=s.use_mixed_precision, compute_dtype=s.compute_dtype)
    assert p.compute_dtype == "bfloat16"
    with pytest.raises(ValueError, match=r"hgc_low_precision.*needs use_mixed_precision=True"):
        CreateSolver(hgc_low_precision="bf16")
    with pytest.raises(ValueError, match=r"hgc_low_precision.*'fp8'.*must be one of"):
        CreateSolver(use_mixed_precision=True, hgc_low_precision="fp8")
    with pytest.raises(TypeError, match="hgc_low_precisions"):
        CreateSolver(hgc_low_precisions="bf16")
