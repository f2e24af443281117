import numpy as np
import pytest

from hgc.errors import ShapeError
from hgc.ir.build import add_node, check_attrs
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import check_grad, infer, random_inputs, rel_err
from tests.ir.ops._model_ops import shape_error, source

OP = "Interaction"
F, D = 3, 5


def test_infer():
    out = infer(OP, {}, [TensorType((B, D)), TensorType((B, F, D))])
    assert out == [TensorType((B, D + F * (F + 1) // 2 + 1))] == [TensorType((B, 12))]
    assert infer(OP, {}, [TensorType((B, 128)), TensorType((B, 26, 128))]) == [TensorType((B, 480))]
    two = infer(OP, {"num_tops": 2}, [TensorType((B, D), "float16"), TensorType((B, F, D), "float16")])
    assert two == [TensorType((B, 12), "float16")] * 2


def test_errors():
    shape_error(OP, {"mlp": TensorType((B, 4)), "emb": TensorType((B, F, D))}, {}, "inter",
                r"embedding width must equal the MLP width.*\(B, 3, 5\).*\(B, 4\)")
    shape_error(OP, {"mlp": TensorType((B, 1, D)), "emb": TensorType((B, F, D))}, {}, "inter", r"\(B, d\)")
    shape_error(OP, {"mlp": TensorType((B * 2, D)), "emb": TensorType((B, F, D))}, {}, "inter",
                r"batch dimensions differ")
    shape_error(OP, {"mlp": TensorType((B, D), "float16"), "emb": TensorType((B, F, D))}, {}, "inter",
                r"share one dtype")
    g = source(mlp=TensorType((B, D)), emb=TensorType((B, F, D)))
    with pytest.raises(ShapeError, match=r"produces 2 tensors but 1 top names"):
        add_node(g, OP, ["mlp", "emb"], ["inter"], {"num_tops": 2})
    with pytest.raises(ValueError, match=r"'num_tops' = 3"):
        check_attrs(OP, {"num_tops": 3})


def test_forward_layout():
    x, e = random_inputs([(4, D), (4, F, D)], seed=1)
    (y,), _ = get_op(OP).forward(RefContext(), check_attrs(OP, {}), [x, e], [])
    assert y.shape == (4, 12)
    rows = np.concatenate([x[:, None], e], axis=1)
    assert np.array_equal(y[:, :D], x)
    order = [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]
    for k, (i, j) in enumerate(order):
        assert D + i * (i - 1) // 2 + j == D + k
        assert rel_err(y[:, D + k], np.einsum("bd,bd->b", rows[:, i], rows[:, j])) < 1e-12
    assert np.all(y[:, -1] == 0)  # the pad is written (HugeCTR's fp32 kernel leaves it unwritten)


def test_gradients():
    x, e = random_inputs([(4, D), (4, F, D)], seed=2)
    check_grad(OP, {}, [x, e])


def test_second_output_is_an_alias_and_its_gradient_is_ignored():
    x, e, g = random_inputs([(4, D), (4, F, D), (4, 12)], seed=3)
    attrs = check_attrs(OP, {"num_tops": 2})
    (y, y2), saved = get_op(OP).forward(RefContext(), attrs, [x, e], [])
    assert np.array_equal(y, y2)
    a, _ = get_op(OP).backward(RefContext(), attrs, saved, [g, 100 * g])
    b, _ = get_op(OP).backward(RefContext(), attrs, saved, [g])
    assert all(np.array_equal(u, v) for u, v in zip(a, b))


def test_json():
    op = get_op(OP)
    assert op.json_write(check_attrs(OP, {"num_tops": 2})) == {}
    assert op.json_read({"bottom": ["mlp", "emb"], "top": ["inter", "inter_grad"]}) == {"num_tops": 2}
    assert op.json_read({"bottom": ["mlp", "emb"], "top": "inter"}) == {"num_tops": 1}
