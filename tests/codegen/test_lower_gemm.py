"""Lowering of MatrixMultiply and GRU to StridedGemm calls (+ the ``gru`` gate kernels): shapes, offsets
and strides, and forward/backward (through time, for GRU) run on the host interpreter against the
reference semantics."""
from __future__ import annotations

import numpy as np
import pytest

from hgc.codegen.lower import lower
from hgc.codegen.plan import Extent, KernelLaunch, StridedGemm, describe
from hgc.errors import NotBuiltError
from hgc.ir.build import add_node
from hgc.ir.ops.gru import weight_size
from tests.codegen._plan_interp import check_graph
from tests.codegen.test_lower import check_signatures
from tests.passes._graphs import with_input


def gemms(plan, node: str, phase: str) -> list[StridedGemm]:
    return [op for s in getattr(plan, phase) if s.node == node for op in s.ops if isinstance(op, StridedGemm)]


def test_batched_3d() -> None:
    g = with_input(24, 1)
    add_node(g, "Slice", ["dense"], ["a", "b"], {"ranges": ((0, 12), (12, 24))})
    add_node(g, "Reshape", ["a"], ["a3"], {"leading_dim": 4, "time_step": 3})  # (B, 3, 4)
    add_node(g, "Reshape", ["b"], ["b43"], {"leading_dim": 3, "time_step": 4})  # (B, 4, 3)
    add_node(g, "MatrixMultiply", ["a3", "b43"], ["y"])  # (B, 3, 3)
    plan, _ = check_graph(g, 7, ["y"], {}, np.random.default_rng(11))
    (f,) = gemms(plan, "y", "forward")
    assert (f.batch, f.m, f.n, f.k) == (Extent(1), Extent.const(3), Extent.const(3), Extent.const(4))
    assert (f.stride_a, f.stride_b, f.stride_c) == (Extent.const(12), Extent.const(12), Extent.const(9))
    da, db = gemms(plan, "y", "backward")
    assert da.transb and not da.transa and db.transa and not db.transb
    assert "gemm" in describe(f)


def test_4d_heads() -> None:
    g = with_input(2 * 3 * 4 * 2, 1)
    add_node(g, "Reshape", ["dense"], ["a4"], {"shape": (-1, 2, 3, 8)})
    add_node(g, "Reshape", ["dense"], ["b4"], {"shape": (-1, 2, 8, 3)})
    add_node(g, "MatrixMultiply", ["a4", "b4"], ["y"])  # (B, 2, 3, 3): the same input on both sides
    plan, _ = check_graph(g, 5, ["y"], {}, np.random.default_rng(12))
    (f,) = gemms(plan, "y", "forward")
    assert f.batch == Extent(2)


@pytest.mark.parametrize("right", ["2d", "3d"])
def test_2d_left_with_a_gathered_right_side(right: str) -> None:
    g = with_input(24, 1)
    add_node(g, "Slice", ["dense"], ["a"], {"ranges": ((0, 3),)})  # (B, 3)
    add_node(g, "Gather", ["dense"], ["w"], {"indices": (2, 0, 4)})  # (3, 24)
    rhs = "w"
    if right == "3d":
        add_node(g, "Reshape", ["w"], ["w3"], {"leading_dim": 6, "time_step": 4})  # (3, 4, 6)
        rhs = "w3"
    add_node(g, "MatrixMultiply", ["a", rhs], ["y"])
    plan, _ = check_graph(g, 6, ["y"], {}, np.random.default_rng(13))
    (f,) = gemms(plan, "y", "forward")
    assert f.batch == Extent.const(1) and f.m == Extent(1) and f.n == Extent.const(24)


def gru_graph(n: int, steps: int, vec: int, hid: int):
    g = with_input(steps * vec, 1)
    add_node(g, "Reshape", ["dense"], ["seq"], {"leading_dim": vec})  # (B*T, V)
    add_node(g, "GRU", ["seq"], ["h"], {"num_output": hid, "batchsize": n, "SeqLength": steps,
                                         "vector_size": vec})
    return g


@pytest.mark.parametrize("steps", [1, 4])
def test_gru_through_time(steps: int) -> None:
    n, vec, hid = 5, 3, 6
    g = gru_graph(n, steps, vec, hid)
    w = [np.random.default_rng(14).uniform(-0.6, 0.6, (1, weight_size(hid, vec)))]
    plan, _ = check_graph(g, n, ["h"], {"h": w}, np.random.default_rng(15))
    fwd = gemms(plan, "h", "forward")
    assert len(fwd) == steps  # the input projections, then one recurrent product per later step
    assert [op.offset_a.fixed for op in fwd[1:]] == [t * n * hid for t in range(steps - 1)]
    assert all(op.offset_b == Extent.const(3 * hid * vec) for op in fwd[1:])
    launches = [op for s in plan.forward if s.node == "h" for op in s.ops if isinstance(op, KernelLaunch)]
    assert [op.args[-1].value.fixed for op in launches] == list(range(steps))
    assert check_signatures(plan) >= 2 * steps + 1


def test_gru_needs_its_sequence_rows() -> None:
    g = gru_graph(5, 3, 2, 4)
    with pytest.raises(NotBuiltError, match="SeqLength"):
        lower(g, batch=4)  # 12 rows at batch 4, the layer reads 15


# -- FC operands with 16-byte rows ------------------------------------------------------------------------
def test_fc_inputs_with_unaligned_rows_go_through_padded_copies() -> None:
    """An FC input whose rows are not a multiple of 16 bytes (13, 33, 31 and 5 float32 columns here) is
    multiplied from a copy with padded rows (lda 16, 36, 32, 8) in the forward and the weight gradient, and
    its gradient is formed in padded rows and copied (accumulated) into its view; aligned inputs are used
    in place. The plan runs on the host interpreter against the reference at several batches."""
    from hgc.codegen.lower import padded_width
    from hgc.codegen.plan import GemmCall
    from tests.codegen._plan_interp import seeded_plan
    from tests.codegen.test_lower_reductions import fc_graph, random_weights, run_at

    assert [padded_width(w, "float32") for w in (13, 16, 33, 1)] == [16, 16, 36, 4]
    assert [padded_width(w, dt) for w, dt in ((429, "float16"), (480, "bfloat16"), (390, "float16"))] == \
        [432, 480, 392]
    g = fc_graph()
    plan = seeded_plan(g, 200, ["y"])
    fwd = [op for s in plan.forward for op in s.ops if isinstance(op, GemmCall)]
    # (the 1-output top layer, on 5 inputs, is fc_narrow's: no GEMM, no copies)
    assert [op.lda.at(200) for op in fwd] == [16, 36, 32]
    assert [op.k.at(200) for op in fwd] == [16, 36, 32]  # the zero columns meet zero weight rows
    assert all(op.a.kind == "scratch" and op.b.kind == "scratch" for op in fwd)
    bwd = [op for s in plan.backward for op in s.ops if isinstance(op, GemmCall)]
    wgrad = [op for op in bwd if op.c.kind == "wgrad"]
    assert sorted(op.lda.at(200) for op in wgrad) == [16, 32, 36]
    dgrad = [op for op in bwd if op.c.kind == "scratch"]
    assert sorted(op.ldc.at(200) for op in dgrad) == sorted(op.n.at(200) for op in dgrad) == [16, 32, 36]
    copies = [op for s in plan.backward for op in s.ops if isinstance(op, KernelLaunch) and op.function == "copy"]
    # padded inputs for the weight gradients, padded weights, padded gradients into their views
    assert len(copies) == 3 + 3 + 3
    for batch in (1, 7, 200, 451):  # the plan was made for 200 rows
        run_at(g, plan, batch, ["y"], random_weights(plan, 5), seed=batch)
