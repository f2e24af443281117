"""Lowering under mixed precision (fp16, and the bf16 extension) and TF32: view and kernel dtypes, GEMM
operand types, the low-precision weight copy the optimizer refreshes, Cast points (forward conversion into
scratch, gradient converted back and accumulated), and every generated module compiling for sm_90."""
from __future__ import annotations

import re

import pytest

from hgc.codegen import nvrtc
from hgc.codegen.lower import _Lowering, lower
from hgc.codegen.nvrtc import compile_source
from hgc.codegen.plan import Arg, ExecutablePlan, Extent, GemmCall, KernelLaunch, KernelSpec, Params
from hgc.codegen.render import render
from hgc.ir.build import add_node
from hgc.ir.graph import Graph
from hgc.passes.context import PassContext
from hgc.passes.pipeline import run_pipeline
from hgc.runtime.cuda.blas import compute_of
from tests.codegen.test_lower import dlrm_graph, every_op_graph, launches, ops, signatures
from tests.passes._graphs import embedding, mlp, with_input

LOW = ("float16", "bfloat16")
POINTERS = {"act", "grad", "scratch", "weight", "wgrad", "weights", "wgrads", "state", "const", "null"}
needs_compiler = pytest.mark.skipif(nvrtc.available() is None, reason="no NVRTC library and no nvcc")


def wdl_graph() -> Graph:
    """Wide & Deep: a width-1 'wide' embedding summed per sample, a deep MLP over embeddings + dense."""
    g = with_input(13, 1, [("wide_keys", 2, 2), ("deep_keys", 3, 2)])
    embedding(g, "DistributedSlotSparseEmbeddingHash", "wide_keys", "wide", 1, workspace=1)
    embedding(g, "DistributedSlotSparseEmbeddingHash", "deep_keys", "deep", 8, workspace=1)
    add_node(g, "Reshape", ["deep"], ["deep_flat"], {"leading_dim": 24})
    add_node(g, "Concat", ["deep_flat", "dense"], ["cat"])
    x = mlp(g, "cat", [32, 16])
    add_node(g, "InnerProduct", [x], ["deep_logit"], {"num_output": 1})
    add_node(g, "ReduceSum", ["wide"], ["wide_sum"], {"axis": 1})
    add_node(g, "Reshape", ["wide_sum"], ["wide_logit"], {"leading_dim": 1})
    add_node(g, "Add", ["deep_logit", "wide_logit"], ["logit"])
    add_node(g, "BinaryCrossEntropyLoss", ["logit", "label"], ["loss"])
    return g


def add_weighted(g: Graph, op: str, x: str) -> None:
    """<op> from ``x`` to 'y' (one weighted op, or a Head/Body/Tail fused FC chain), then fc 'logit' -> BCE."""
    if op == "InnerProduct":
        add_node(g, "InnerProduct", [x], ["y"], {"num_output": 14})
    elif op == "FusedInnerProduct":
        add_node(g, "FusedInnerProduct", [x], ["y"], {"num_output": 14, "pos_type": "Isolated",
                                                     "act_type": "Relu"})
    elif op == "GroupFusedInnerProduct":
        for i, (w, pos) in enumerate(((20, "Head"), (12, "Body"), (9, "Tail"))):
            src, dst = x if i == 0 else f"g{i - 1}", f"g{i}" if i < 2 else "y"
            add_node(g, "FusedInnerProduct", [src], [dst], {"num_output": w, "pos_type": pos, "act_type": "Relu"})
    elif op == "MultiCross":
        add_node(g, "MultiCross", [x], ["y"], {"num_layers": 2})
    elif op == "MultiCrossV2":
        add_node(g, "MultiCross", [x], ["y"], {"num_layers": 2, "projection_dim": 5})
    elif op == "BatchNorm":
        add_node(g, "BatchNorm", [x], ["y"], {"factor": 0.9, "eps": 1e-5})
    else:
        raise ValueError(op)
    add_node(g, "InnerProduct", ["y"], ["logit"], {"num_output": 1})
    add_node(g, "BinaryCrossEntropyLoss", ["logit", "label"], ["loss"])


def weighted_graph(op: str) -> Graph:
    """dense -> fc 'pre' -> ELU -> <op> -> fc -> BCE (see add_weighted). An ELU, not a ReLU: the passes
    would fuse 'pre' into the op's FC chain; its output is centred, so BatchNorm does not magnify the
    rounding of a large common offset."""
    g = with_input(11, 1)
    add_node(g, "InnerProduct", ["dense"], ["pre"], {"num_output": 18})
    add_node(g, "ELU", ["pre"], ["pre_r"], {"elu_alpha": 1.0})
    add_weighted(g, op, "pre_r")
    return g


WEIGHTED = ("InnerProduct", "FusedInnerProduct", "GroupFusedInnerProduct", "MultiCross", "MultiCrossV2",
            "BatchNorm")


def compiled(g: Graph, dtype: str = "float32", tf32: bool = False, batch: int = 24
             ) -> tuple[ExecutablePlan, dict]:
    ctx = PassContext(batchsize=batch, use_mixed_precision=dtype != "float32",
                      compute_dtype=dtype if dtype == "bfloat16" else "float32", enable_tf32_compute=tf32)
    res = run_pipeline(g, ctx)
    return lower(res.graph, res.plans), res.plans


def gemms(plan: ExecutablePlan, phase: str | None = None) -> list[GemmCall]:
    phases = (phase,) if phase else ("forward", "backward")
    return [op for p in phases for op in ops(plan, p) if isinstance(op, GemmCall)]


def check_signatures(plan: ExecutablePlan) -> int:
    """Every launch matches its kernel's parameters: count, pointer vs scalar, scalar C type, and the
    element type of pointers to views (half views go to __half / __nv_bfloat16 parameters)."""
    sigs: dict[str, list[str]] = {}
    for spec in plan.kernels:
        sigs.update(signatures(render(spec)))
    ctypes = {"float32": "float", "float16": "__half", "bfloat16": "__nv_bfloat16"}
    typedefs = {}
    for spec in plan.kernels:
        src = render(spec)
        t = re.search(r"typedef (\w+) T;", src)
        d = re.search(r"typedef (\w+) D;", src)
        typedefs[spec.name] = {"T": t.group(1) if t else None, "D": d.group(1) if d else None}
    n = 0
    for launch in launches(plan):
        name = f"{launch.spec}_{launch.function}"
        params = sigs[name]
        assert len(params) == len(launch.args), f"{name}: {len(launch.args)} args for {params}"
        for arg, p in zip(launch.args, params):
            if arg.kind not in POINTERS:
                assert "*" not in p, f"{name}: scalar {arg} for '{p}'"
                continue
            assert "*" in p, f"{name}: pointer {arg} for '{p}'"
            if arg.kind in ("act", "grad", "scratch"):
                kind = {"act": "activation", "grad": "gradient", "scratch": "scratch"}[arg.kind]
                want = ctypes[plan.binding(arg.name, kind).dtype]
                ctype = p.replace("const ", "").replace("__restrict__", "").split("*")[0].strip()
                ctype = typedefs[launch.spec].get(ctype) or ctype
                assert ctype == want, f"{name}: {kind} view {arg.name} ({want}) for parameter '{p}'"
        n += 1
    return n


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("model", ["dlrm", "wdl"])
def test_mixed_precision_model_lowers_with_half_views_and_fp32_master(model: str, dtype: str) -> None:
    plan, plans = compiled(dlrm_graph() if model == "dlrm" else wdl_graph(), dtype)
    assert plan.compute_dtype == dtype
    prec = plans["precision"]
    # labels and the loss value stay float32; activations, gradients and embedding outputs are half
    assert plan.binding("label").dtype == "float32" and plan.binding("loss").dtype == "float32"
    for e in plan.embeddings:
        assert e.out_dtype == dtype and plan.kernel(e.spec).params["dtype"] == dtype
    for b in plan.buffers:
        if b.kind in ("activation", "gradient") and b.tensor not in ("label", "loss", "dense"):
            assert b.dtype == dtype, f"{b.kind} view of {b.tensor} is {b.dtype}"
    assert plan.binding("dense").dtype == ("float16" if dtype == "float16" else "float32")
    # GEMMs: half A and B (weights from the low-precision copy), fp32 accumulation; dW into fp32 wgrads
    gs = gemms(plan)
    assert gs and all(g.dtype == dtype and g.compute_type == "float32" for g in gs)
    dw = [g for g in gs if g.c.kind == "wgrad"]
    assert dw and all(g.beta == 1.0 for g in dw)
    loss_spec = next(plan.kernel(op.spec) for op in launches(plan) if plan.kernel(op.spec).template == "loss")
    assert loss_spec.params["dtype"] == dtype  # BCE reads the half prediction, computes in fp32
    # the dense optimizer refreshes the half copy of the fp32 master weights
    (step,) = [op for op in ops(plan, "optimizer") if isinstance(op, KernelLaunch)]
    assert plan.kernel(step.spec).params["half_copy"] == dtype
    assert step.args[0] == Arg("weights") and step.args[4] == Arg("weights", value=dtype)
    assert check_signatures(plan) > 10
    if dtype == "float16":
        assert prec.casts == ()
    else:  # only the float32 dense input is converted, on the device
        assert {c.tensor for c in prec.casts} == {"dense"}


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("op", WEIGHTED)
def test_every_weighted_op_lowers_in_low_precision(op: str, dtype: str) -> None:
    plan, _ = compiled(weighted_graph(op), dtype)
    node = next(n for n in plan.nodes if "y" in n.outputs)
    assert node.op == ("MultiCross" if op.startswith("MultiCross") else op)
    specs = [plan.kernel(s) for s in {l.spec for l in launches(plan)}]
    mine = [s for s in specs if node.name in s.nodes and s.template != "elementwise"]
    assert mine and all(s.params["dtype"] == dtype for s in mine)
    assert plan.binding("y").dtype == dtype and plan.binding("y", "gradient").dtype == dtype
    assert all(g.dtype == dtype for g in gemms(plan))
    assert check_signatures(plan) > 5


def test_fused_group_keeps_member_outputs_and_gemm_types() -> None:
    plan, _ = compiled(weighted_graph("GroupFusedInnerProduct"), "float16")
    group = next(n for n in plan.nodes if n.op == "GroupFusedInnerProduct")
    assert group.outputs == ("g0", "g1", "y")
    # every member's input (18, 20, 12 wide) runs over whole 16-byte rows: its weight is a zero-padded copy
    fwd = [g for g in gemms(plan, "forward") if g.b.name.startswith(f"{group.name}/")]
    assert [g.b.name for g in fwd] == [f"{group.name}/wpad{i}" for i in (0, 2, 4)]
    assert [g.k.at(24) for g in fwd] == [24, 24, 16] and all(g.epilogue is not None for g in fwd)
    copies = {op.args[1].name: op.args[0] for op in ops(plan, "forward")
              if isinstance(op, KernelLaunch) and op.function == "copy"}
    assert all(copies[f"{group.name}/wpad{i}"] == Arg("weight", group.name, i, "low")  # the fp16 weight copy
               for i in (0, 2, 4))
    # an input gradient lands in its view, or first in padded rows when the rows are not 16-byte aligned
    bwd = [g for g in gemms(plan, "backward") if g.c.kind in ("wgrad", "grad", "scratch") and
           (g.c.name == group.name or g.c.name in ("g0", "g1", "pre_r") or
            g.c.name.startswith(f"{group.name}/grad_rows"))]
    assert {"grad" if g.c.kind == "scratch" else g.c.kind for g in bwd} == {"wgrad", "grad"}
    assert all(g.dtype == "float16" for g in bwd)


@pytest.mark.parametrize("dtype", LOW)
def test_cast_points_convert_forward_and_gradients(dtype: str) -> None:
    """Sub and CrossEntropyLoss are float32-only: their half inputs are converted into scratch views, and
    the gradients they write come back through a conversion that stores or accumulates."""
    g = with_input(9, 2)
    add_node(g, "InnerProduct", ["dense"], ["a"], {"num_output": 7})
    add_node(g, "InnerProduct", ["dense"], ["b"], {"num_output": 7})
    add_node(g, "Sub", ["a", "b"], ["d"])
    add_node(g, "Add", ["d", "a"], ["s"])
    add_node(g, "InnerProduct", ["s"], ["two"], {"num_output": 2})
    add_node(g, "CrossEntropyLoss", ["two", "label"], ["loss"])
    plan, plans = compiled(g, dtype)
    assert plan.binding("d").dtype == "float32" and plan.binding("a").dtype == dtype
    fwd = {s.node: s.ops for s in plan.forward}
    conv = [op for op in fwd["d"] if op.function == "fwd" and plan.kernel(op.spec).params.get("op") == "cast"]
    sa, sb = Arg("scratch", "d/as_float32:a"), Arg("scratch", "d/as_float32:b")
    assert [(op.args[0], op.args[1]) for op in conv] == [(Arg("act", "a"), sa), (Arg("act", "b"), sb)]
    sub = fwd["d"][-1]
    assert sub.args[:3] == (sa, sb, Arg("act", "d"))
    assert plan.binding("d/as_float32:a", "scratch").dtype == "float32"
    # s = d + a reads d (fp32) in half: the Add node converts it
    assert any(op.args[1] == Arg("scratch", f"s/as_{dtype}:d") for op in fwd["s"] if op.function == "fwd")
    bwd = {s.node: s.ops for s in plan.backward}
    sub_b, back_a, back_b = bwd["d"]
    assert sub_b.args[1] == Arg("scratch", "d/as_float32:a/grad")
    assert back_a.function == "bwd"
    assert back_a.args[:2] == (Arg("scratch", "d/as_float32:a/grad"), Arg("grad", "a"))
    # the Add wrote a's gradient first (backward runs in reverse), so the Sub's conversion adds
    assert back_a.args[-1].value.fixed == 1 and back_b.args[-1].value.fixed == 0
    loss_f = fwd["loss"]
    assert plan.kernel(loss_f[-1].spec).params["dtype"] == "float32"
    assert loss_f[-1].args[0] == Arg("scratch", "loss/as_float32:two")
    assert check_signatures(plan) > 10
    assert len(plans["precision"].casts) == 4 + (dtype == "bfloat16") * 2  # + the dense input, read twice


def test_alias_of_a_converted_input_gets_its_own_buffer() -> None:
    """Under bf16 the dense input stays float32; a Reshape of it cannot alias it, so the conversion writes
    the Reshape's own (bf16) view directly."""
    g = with_input(12, 1)
    add_node(g, "Reshape", ["dense"], ["rows"], {"leading_dim": 4})
    add_node(g, "InnerProduct", ["rows"], ["h"], {"num_output": 3})
    add_node(g, "Reshape", ["h"], ["flat"], {"leading_dim": 9})
    add_node(g, "InnerProduct", ["flat"], ["logit"], {"num_output": 1})
    add_node(g, "BinaryCrossEntropyLoss", ["logit", "label"], ["loss"])
    plan, _ = compiled(g, "bfloat16")
    rows = plan.binding("rows")
    assert rows.alias_of == "" and rows.dtype == "bfloat16" and rows.buffer != plan.binding("dense").buffer
    (conv,) = [op for s in plan.forward if s.node == "rows" for op in s.ops]
    assert conv.args[:2] == (Arg("act", "dense"), Arg("act", "rows"))
    assert not [b for b in plan.buffers if b.tensor == "rows/as_bfloat16:dense"]
    assert plan.binding("flat").alias_of == "h"  # same dtype: still an alias


def test_tf32_marks_float32_gemms_only_when_asked() -> None:
    plain, _ = compiled(dlrm_graph())
    assert {g.compute_type for g in gemms(plain)} == {"float32"}
    assert {g.dtype for g in gemms(plain)} == {"float32"}
    tf32, plans = compiled(dlrm_graph(), tf32=True)
    assert plans["precision"].tf32
    assert gemms(tf32) and {g.compute_type for g in gemms(tf32)} == {"tf32"}
    half, _ = compiled(dlrm_graph(), "float16", tf32=True)  # TF32 is for fp32 GEMMs only
    assert {g.compute_type for g in gemms(half)} == {"float32"}


def test_full_precision_plan_has_no_half_copy() -> None:
    plan, _ = compiled(dlrm_graph())
    (step,) = [op for op in ops(plan, "optimizer") if isinstance(op, KernelLaunch)]
    assert plan.kernel(step.spec).params["half_copy"] is False and step.args[4] == Arg("null")
    assert all(b.dtype == "float32" for b in plan.buffers if b.kind != "scratch")


def test_gemm_types_are_checked() -> None:
    g = weighted_graph("InnerProduct")
    ctx = PassContext(batchsize=8, use_mixed_precision=True)
    res = run_pipeline(g, ctx)
    low = _Lowering(res.graph, res.plans, 8, ())
    one = Extent.const(4)
    ok = low.typed_gemm(GemmCall(Arg("act", "pre_r"), Arg("weight", "y", 0), Arg("act", "y"), one, one, one))
    assert ok.dtype == "float16" and ok.compute_type == "float32"
    dw = low.typed_gemm(GemmCall(Arg("act", "pre_r"), Arg("grad", "y"), Arg("wgrad", "y", 0), one, one, one,
                                 transa=True))
    assert dw.dtype == "float16"
    with pytest.raises(ValueError, match="different dtypes"):
        low.typed_gemm(GemmCall(Arg("act", "label"), Arg("act", "y"), Arg("act", "y"), one, one, one))
    with pytest.raises(ValueError, match="C is float16 for float32"):
        low.typed_gemm(GemmCall(Arg("act", "label"), Arg("weight", "y", 0), Arg("act", "y"), one, one, one))


def test_cublas_type_combinations() -> None:
    assert compute_of("float16", "float16", "float32") == "float32"
    assert compute_of("bfloat16", "float32", "float32") == "float32"
    assert compute_of("float32", "float32", "tf32") == "tf32"
    assert compute_of("float64", "float64", "float32") == "float64"
    for ab, c in (("float16", "bfloat16"), ("float32", "float16"), ("float16", "float64")):
        with pytest.raises(ValueError, match="no cuBLAS GEMM"):
            compute_of(ab, c, "float32")


@pytest.mark.parametrize("half", [True, "float16", "bfloat16"])
def test_optimizer_template_half_copy_types_and_unscaled_regularizer(half: object) -> None:
    params = Params(kind="Adam", reg="L2", half_copy=half, beta1=0.9, beta2=0.999, epsilon=1e-7,
                    momentum_factor=0.0, lambda1=0.0, lambda2=0.0, beta=0.0)
    spec = KernelSpec("optimizer", "k_opt", params)
    src = render(spec)
    w16 = "__nv_bfloat16" if half == "bfloat16" else "__half"
    assert f"{w16}* __restrict__ w16" in src and f"from_f<{w16}>(wi)" in src
    # the loss scale divides the gradient, never the regularizer term
    assert "g[i] * inv_scaler + reg_scale * wi" in src


def _all_specs(dtype: str) -> list[KernelSpec]:
    out: dict[str, KernelSpec] = {}
    for g in (dlrm_graph(), wdl_graph(), every_op_graph(), *(weighted_graph(op) for op in WEIGHTED)):
        plan, _ = compiled(g, dtype)
        for k in plan.kernels:
            out.setdefault(render(k).split("\n", 6)[-1], k)  # dedupe by body (the header names the module)
    return list(out.values())


@needs_compiler
@pytest.mark.parametrize("dtype", LOW)
def test_every_generated_module_compiles_for_sm90(dtype: str) -> None:
    specs = _all_specs(dtype)
    templates = {k.template for k in specs}
    assert {"bias_act", "multi_cross", "batch_norm", "optimizer", "embedding", "interaction", "loss",
            "elementwise"} <= templates
    for spec in specs:
        res = compile_source(render(spec), spec.name, arch="sm_90")
        assert ".target sm_90" in res.ptx and res.cubin, spec.name
        for fn, r in res.resources.items():
            assert r.spill_stores == 0 and r.spill_loads == 0, f"{fn} spills: {r}"


@pytest.mark.parametrize("dtype", ["float32", *LOW])
def test_interaction_lowers_to_tensor_cores_in_low_precision(dtype: str) -> None:
    from hgc.codegen.lower import interaction_config

    plan, _ = compiled(dlrm_graph(), dtype)
    found = [(op, phase) for phase in ("forward", "backward") for op in ops(plan, phase)
             if isinstance(op, KernelLaunch) and op.spec.startswith("hgc_interaction")]
    assert len(found) == 2
    params = plan.kernel(found[0][0].spec).params
    cfg = interaction_config(params["dtype"], params["d"], params["f"])
    assert params["dtype"] == dtype and params["tc"] == (dtype != "float32") == cfg.tc
    for op, phase in found:
        assert op.launch.block == (cfg.block, 1, 1) and op.launch.per_block == cfg.per_block
        assert op.launch.smem == (cfg.fwd_smem if phase == "forward" else cfg.bwd_smem)
        assert op.launch.grid(64) == (-(-64 // cfg.per_block), 1, 1)
