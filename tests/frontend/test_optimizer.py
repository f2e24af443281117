import pytest

import hgc
from hgc.ir.json_io import OPTIMIZER_DEFAULTS
from hgc.ir.node import Attrs
from hgc.ir.ops.embeddings import OPT_FIELDS


def test_defaults_follow_the_binding():
    o = hgc.CreateOptimizer()
    assert o.optimizer_type is hgc.Optimizer_t.Adam
    assert o.update_type is hgc.Update_t.Global  # the argument list's default (facts §3.1), not the prose's Local
    assert (o.beta1, o.beta2, o.epsilon) == (0.9, 0.999, 1e-7)
    assert (o.beta, o.lambda1, o.lambda2, o.initial_accu_value, o.momentum_factor) == (0, 0, 0, 0, 0)
    assert o.atomic_update is True


def test_to_attrs_holds_every_field_by_name():
    a = hgc.CreateOptimizer(optimizer_type=hgc.Optimizer_t.Adagrad, update_type=hgc.Update_t.Local,
                            initial_accu_value=0.1, epsilon=1e-6).to_attrs()
    assert isinstance(a, Attrs) and set(a) == set(OPT_FIELDS)
    assert a["optimizer_type"] == "AdaGrad" and a["update_type"] == "Local" and a["initial_accu_value"] == 0.1
    assert hgc.CreateOptimizer().to_attrs() == Attrs(OPTIMIZER_DEFAULTS)  # agrees with the JSON reader


def test_seed_example():
    o = hgc.CreateOptimizer(optimizer_type=hgc.Optimizer_t.Adam, update_type=hgc.Update_t.Global, beta1=0.9,
                            beta2=0.999, epsilon=0.0000001)
    assert o.to_attrs()["epsilon"] == 1e-7


@pytest.mark.parametrize("kwargs, arg, rule", [
    ({"optimizer_type": "Adamax"}, "optimizer_type", "Optimizer_t.Adam"),
    ({"update_type": 1}, "update_type", "Update_t.Local"),
    ({"beta1": 1.0}, "beta1", "< 1.0"),
    ({"beta2": -0.1}, "beta2", ">= 0.0"),
    ({"epsilon": 0}, "epsilon", "> 0.0"),
    ({"momentum_factor": 1.5}, "momentum_factor", "< 1.0"),
    ({"atomic_update": "yes"}, "atomic_update", "True or False"),
    ({"optimizer_type": hgc.Optimizer_t.SGD, "update_type": hgc.Update_t.LazyGlobal}, "update_type",
     "only with Optimizer_t.Adam"),
])
def test_rejects(kwargs, arg, rule):
    with pytest.raises(ValueError, match=rf"CreateOptimizer\(\): argument '{arg}' = .* is not allowed: .*{rule}"):
        hgc.CreateOptimizer(**kwargs)


def test_unknown_keyword():
    with pytest.raises(TypeError, match="learning_rate"):
        hgc.CreateOptimizer(learning_rate=0.1)
