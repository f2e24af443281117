"""Lowering of Select, Gather, Scale (the ``select`` family) and SequenceMask: kernel specs and the inverse
index maps, and forward/backward run on the host interpreter against the reference semantics."""
from __future__ import annotations

import numpy as np
import pytest

from hgc.codegen.lower import lower
from hgc.codegen.plan import KernelLaunch
from hgc.ir.build import add_node
from tests.codegen._plan_interp import HostPlan, check_graph, reference, rel_err, seeded_plan
from tests.codegen.test_lower import check_signatures
from tests.passes._graphs import with_input


def launches_of(plan, node: str, phase: str = "forward") -> list[KernelLaunch]:
    return [op for s in getattr(plan, phase) if s.node == node for op in s.ops
            if isinstance(op, KernelLaunch)]


@pytest.mark.parametrize("dim,index", [(1, (2, 0, 2, 3)), (2, (4, 4, 1))])
def test_select_matches_the_reference(dim: int, index: tuple) -> None:
    g = with_input(30, 1)
    add_node(g, "Reshape", ["dense"], ["x3"], {"leading_dim": 5, "time_step": 6})  # (B, 6, 5)
    add_node(g, "Select", ["x3"], ["y"], {"dim": dim, "index": index})
    plan, _ = check_graph(g, 7, ["y"], {}, np.random.default_rng(1))
    spec = plan.kernel(launches_of(plan, "y")[0].spec)
    assert spec.template == "select" and spec.params["index"] == index
    # the inverse map: entry d is read at the output positions inv_q[inv_off[d]:inv_off[d+1]]
    off, qs = spec.params["inv_off"], spec.params["inv_q"]
    for d in range(len(off) - 1):
        assert sorted(qs[off[d]:off[d + 1]]) == [q for q, e in enumerate(index) if e == d]
    assert check_signatures(plan) >= 2


def test_gather_rows_scatter_back_and_repeat() -> None:
    g = with_input(9, 1)
    add_node(g, "Gather", ["dense"], ["rows"], {"indices": (4, 0, 4, 2)})
    plan, host = check_graph(g, 6, ["rows"], {}, np.random.default_rng(2))
    gx = host.view("dense", "gradient")
    assert np.all(gx[[1, 3, 5]] == 0.0)  # rows nobody gathered get an explicit zero
    (fwd,) = launches_of(plan, "rows")
    assert fwd.args[3].value.num == 1  # D: the row count follows the batch


@pytest.mark.parametrize("axis", [0, 1])
def test_scale_backward_sums_the_copies(axis: int) -> None:
    g = with_input(5, 1)
    add_node(g, "Scale", ["dense"], ["rep"], {"axis": axis, "factor": 3.0})
    _, host = check_graph(g, 7, ["rep"], {}, np.random.default_rng(3))
    gy = host.view("rep", "gradient")
    want = gy.reshape(7, 5, 3).sum(axis=2) if axis == 0 else gy.reshape(7, 3, 5).sum(axis=1)
    assert rel_err(host.view("dense", "gradient"), want) < 1e-12  # the sum, not HugeCTR's first copy


def test_sequence_mask_forward_and_no_gradient() -> None:
    g = with_input(2, 1)
    add_node(g, "Slice", ["dense"], ["from", "to"], {"ranges": ((0, 1), (1, 2))})
    add_node(g, "SequenceMask", ["from", "to"], ["mask"], {"max_sequence_len_from": 4,
                                                           "max_sequence_len_to": 6})
    plan = lower(g, batch=9)
    assert check_signatures(plan) >= 1
    assert not [s for s in plan.backward if s.node == "mask"]
    spec = plan.kernel(launches_of(plan, "mask")[0].spec)
    assert (spec.template, spec.params["op"], spec.params["f"], spec.params["t"]) == ("elementwise",
                                                                                      "sequence_mask", 4, 6)
    # run the mask on the host: lengths straight from the dense input (Slice copies are interpreted too)
    host = HostPlan(seeded_plan(g, 9, ()), 9, {})
    lens = np.random.default_rng(4).integers(0, 7, (9, 2)).astype(np.float64)
    host.set("dense", lens)
    host.forward()
    values, _, _ = reference(g, {"dense": lens}, {}, {}, training=False)
    assert np.array_equal(host.view("mask"), values["mask"])
