import numpy as np
import pytest

from hgc.errors import ShapeError
from hgc.ir.build import add_node, check_attrs
from hgc.ir.ops.fused_fc import members
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import check_grad, infer, random_inputs, rel_err
from tests.ir.ops._model_ops import round_trip, shape_error, source

FIP, GROUP = "FusedInnerProduct", "GroupFusedInnerProduct"


def test_infer():
    assert infer(FIP, {"num_output": 5}, [TensorType((B, 7))]) == [TensorType((B, 5))]
    assert infer(FIP, {"num_output": 3}, [TensorType((B, 7), "float16")] * 2) == [TensorType((B, 3), "float16")]
    assert infer(FIP, {"num_output": 3}, [TensorType((B, 2, 7))]) == [TensorType((B, 2, 3))]


@pytest.mark.parametrize("pos", ["Non", "Head", "Body", "Isolated"])
def test_no_activation_only_on_tail(pos):
    shape_error(FIP, {"x": TensorType((B, 7))}, {"pos_type": pos, "act_type": "Non"}, "fc",
                rf"act_type = 'Non' is not allowed with pos_type = '{pos}'")
    assert infer(FIP, {"pos_type": "Tail", "act_type": "Non"}, [TensorType((B, 7))]) == [TensorType((B, 1))]


def test_input_errors():
    shape_error(FIP, {"x": TensorType((B, 7)), "g": TensorType((B, 8))}, {}, "fc", r"second input.*shape")
    shape_error(FIP, {"x": TensorType((B, 2, 3, 7))}, {}, "fc", r"rank 4")
    g = source(a=TensorType((B, 7)), b=TensorType((B, 7)), c=TensorType((B, 7)))
    with pytest.raises(ShapeError, match=r"FusedInnerProduct layer 'fc': takes 1..2 bottom tensors, got 3"):
        add_node(g, FIP, ["a", "b", "c"], ["fc"], {})
    with pytest.raises(ValueError, match=r"'pos_type' = 'Middle'"):
        check_attrs(FIP, {"pos_type": "Middle"})


@pytest.mark.parametrize("act", ["Relu", "Non"])
def test_forward(act):
    x, w, b = random_inputs([(6, 7), (7, 5), (1, 5)], seed=1)
    attrs = check_attrs(FIP, {"num_output": 5, "pos_type": "Tail", "act_type": act})
    (y,), _ = get_op(FIP).forward(RefContext(), attrs, [x], [w, b])
    z = x @ w + b
    assert rel_err(y, np.maximum(z, 0) if act == "Relu" else z) < 1e-12


@pytest.mark.parametrize("act,shape", [("Relu", (6, 7)), ("Non", (6, 7)), ("Relu", (2, 3, 7))])
def test_gradients(act, shape):
    x, w, b = random_inputs([shape, (7, 5), (1, 5)], seed=2)
    check_grad(FIP, {"num_output": 5, "pos_type": "Tail", "act_type": act}, [x], [w, b])


def test_second_input_takes_no_gradient():
    x, alias, w, b = random_inputs([(4, 7), (4, 7), (7, 3), (1, 3)], seed=3)
    attrs = check_attrs(FIP, {"num_output": 3, "pos_type": "Head"})
    ctx = RefContext()
    (y,), saved = get_op(FIP).forward(ctx, attrs, [x, alias], [w, b])
    (y1,), _ = get_op(FIP).forward(ctx, attrs, [x, alias * 7], [w, b])
    assert np.array_equal(y, y1)
    gxs, _ = get_op(FIP).backward(ctx, attrs, saved, [np.ones_like(y)])
    assert gxs[1] is None and gxs[0].shape == x.shape
    check_grad(FIP, {"num_output": 3, "pos_type": "Head"}, [x, alias], [w, b])


def test_init_matches_inner_product():
    attrs = {"num_output": 30, "weight_init_type": "Uniform", "bias_init_type": "XavierNorm"}
    t = [TensorType((B, 20))]
    fused = get_op(FIP).init(check_attrs(FIP, attrs), t + t, np.random.default_rng(5))
    plain = get_op("InnerProduct").init(check_attrs("InnerProduct", attrs), t, np.random.default_rng(5))
    assert all(np.array_equal(a, b) for a, b in zip(fused, plain))
    assert fused[0].shape == (20, 30) and np.abs(fused[0]).max() <= 1 / 50
    assert [s.name for s in get_op(FIP).weights(check_attrs(FIP, attrs), t)] == ["W", "b"]


def test_json():
    _, written = round_trip(FIP, {"num_output": 9, "pos_type": "Tail", "act_type": "Non",
                                  "weight_init_type": "XavierUniform"})
    assert written == {"fc_param": {"num_output": 9, "weight_init": "XavierUniform"},
                       "position": "Tail", "activation": "None"}
    _, written = round_trip(FIP, {"num_output": 4})
    assert written["position"] == "None" and written["activation"] == "Relu"
    assert get_op(FIP).json_read({"fc_param": {"num_output": 2}}) == {"num_output": 2}


# -- GroupFusedInnerProduct ------------------------------------------------------------------
GATTRS = {"num_outputs": (9, 5, 3), "activations": ("Relu", "Relu", "Non")}


def test_group_infer_and_weights():
    out = infer(GROUP, GATTRS, [TensorType((B, 7))])
    assert out == [TensorType((B, 9)), TensorType((B, 5)), TensorType((B, 3))]
    specs = get_op(GROUP).weights(check_attrs(GROUP, GATTRS), [TensorType((B, 7))])
    assert [(s.name, s.shape) for s in specs] == [("W0", (7, 9)), ("b0", (1, 9)), ("W1", (9, 5)),
                                                   ("b1", (1, 5)), ("W2", (5, 3)), ("b2", (1, 3))]
    ws = get_op(GROUP).init(check_attrs(GROUP, GATTRS), [TensorType((B, 7))], np.random.default_rng(0))
    assert [w.shape for w in ws] == [s.shape for s in specs]


def test_group_members():
    m = members(check_attrs(GROUP, GATTRS))
    assert [(x["pos_type"], x["act_type"]) for x in m] == [("Head", "Relu"), ("Body", "Relu"), ("Tail", "Non")]
    assert members(check_attrs(GROUP, {"num_outputs": (4,)}))[0]["pos_type"] == "Isolated"
    lone = members(check_attrs(GROUP, {"num_outputs": (4,), "activations": ("Non",)}))[0]
    assert lone["pos_type"] == "Tail" and infer(FIP, lone, [TensorType((B, 7))]) == [TensorType((B, 4))]


def test_group_errors():
    t = {"x": TensorType((B, 7))}
    shape_error(GROUP, t, {"num_outputs": (4, 2), "activations": ("Non", "Relu")}, "f1",
                r"activations\[0\] = 'Non'", outputs=["f1", "f2"])
    shape_error(GROUP, t, {"num_outputs": (4, 2), "weight_init_types": ("Zero",)}, "f1",
                r"weight_init_types has 1 entries but num_outputs has 2", outputs=["f1", "f2"])
    with pytest.raises(ValueError, match=r"'num_outputs' = \(\)"):
        check_attrs(GROUP, {"num_outputs": ()})
    with pytest.raises(ValueError, match=r"'activations'"):
        check_attrs(GROUP, {"num_outputs": (3,), "activations": ("Tanh",)})


def test_group_forward_is_the_chain():
    x, *ws = random_inputs([(5, 7), (7, 9), (1, 9), (9, 5), (1, 5), (5, 3), (1, 3)], seed=8)
    ys, _ = get_op(GROUP).forward(RefContext(), check_attrs(GROUP, GATTRS), [x], ws)
    h = x
    for i, m in enumerate(members(check_attrs(GROUP, GATTRS))):
        (h,), _ = get_op(FIP).forward(RefContext(), check_attrs(FIP, m), [h], ws[2 * i:2 * i + 2])
        assert rel_err(ys[i], h) < 1e-12


def test_group_gradients():
    x, alias, *ws = random_inputs([(5, 7), (5, 7), (7, 9), (1, 9), (9, 5), (1, 5), (5, 3), (1, 3)], seed=9)
    check_grad(GROUP, GATTRS, [x, alias], ws)
    check_grad(GROUP, {"num_outputs": (4,)}, [x], ws[:0] + random_inputs([(7, 4), (1, 4)], seed=2))


def test_group_backward_without_intermediate_gradients():
    x, *ws = random_inputs([(5, 7), (7, 9), (1, 9), (9, 5), (1, 5), (5, 3), (1, 3)], seed=10)
    attrs = check_attrs(GROUP, GATTRS)
    ys, saved = get_op(GROUP).forward(RefContext(), attrs, [x], ws)
    g = np.ones_like(ys[2])
    gxs, gws = get_op(GROUP).backward(RefContext(), attrs, saved, [None, None, g])
    gxs2, gws2 = get_op(GROUP).backward(RefContext(), attrs, saved,
                                        [np.zeros_like(ys[0]), np.zeros_like(ys[1]), g])
    assert rel_err(gxs[0], gxs2[0]) < 1e-12 and all(rel_err(a, b) < 1e-12 for a, b in zip(gws, gws2))


def test_group_json():
    _, written = round_trip(GROUP, {**GATTRS, "bias_init_types": ("Zero", "Default", "Uniform")})
    assert written == {"group_fc_param": {"num_outputs": [9, 5, 3], "activations": ["Relu", "Relu", "None"],
                                          "bias_init": ["Zero", "Default", "Uniform"]}}
    _, written = round_trip(GROUP, {"num_outputs": (4, 2)})
    assert written == {"group_fc_param": {"num_outputs": [4, 2]}}
    round_trip(GROUP, {"num_outputs": (4, 2), "weight_init_types": ("Default", "Default")})
