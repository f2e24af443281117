"""``CreateOptimizer`` → ``OptParamsPy``: the optimizer of a model's dense weights and, unless an embedding
names its own, of its embeddings. The learning rate is not here: it comes from the solver's schedule.
"""
from __future__ import annotations

from dataclasses import dataclass

from hgc.frontend._args import as_bool, as_float, bad
from hgc.frontend.enums import Optimizer_t, Update_t, to_enum
from hgc.ir.node import Attrs

#: Field order of the IR optimizer record (graph.meta["optimizer"], an embedding's ``optimizer``).
OPT_FIELDS = ("optimizer_type", "update_type", "beta1", "beta2", "epsilon", "initial_accu_value",
              "momentum_factor", "atomic_update", "lambda1", "lambda2", "beta")


@dataclass
class OptParamsPy:
    """An optimizer and its hyper-parameters.

    ``beta1``/``beta2``/``epsilon``: Adam (``epsilon`` also AdaGrad and RMSProp); ``initial_accu_value``:
    AdaGrad's starting accumulator; ``momentum_factor``: MomentumSGD and Nesterov; ``atomic_update``: SGD on
    embeddings; ``beta``/``lambda1``/``lambda2``: Ftrl (``beta`` also RMSProp's decay). ``update_type`` says
    which embedding rows move per step: Global (all), Local (rows hit by the batch), LazyGlobal (Adam only).
    """

    optimizer_type: Optimizer_t = Optimizer_t.Adam
    update_type: Update_t = Update_t.Global
    beta: float = 0.0
    lambda1: float = 0.0
    lambda2: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-7
    initial_accu_value: float = 0.0
    momentum_factor: float = 0.0
    atomic_update: bool = True

    def to_attrs(self) -> Attrs:
        """The IR record: every field, enum members by name."""
        values = {f: getattr(self, f) for f in OPT_FIELDS}
        values["optimizer_type"] = self.optimizer_type.name
        values["update_type"] = self.update_type.name
        return Attrs(values)


def CreateOptimizer(optimizer_type: Optimizer_t = Optimizer_t.Adam, update_type: Update_t = Update_t.Global,
                    beta: float = 0.0, lambda1: float = 0.0, lambda2: float = 0.0, beta1: float = 0.9,
                    beta2: float = 0.999, epsilon: float = 1e-7, initial_accu_value: float = 0.0,
                    momentum_factor: float = 0.0, atomic_update: bool = True) -> OptParamsPy:
    """An ``OptParamsPy``; see that class for what each argument does. Defaults are HugeCTR's binding defaults
    (``update_type`` Global)."""
    w = "CreateOptimizer()"
    opt = OptParamsPy(
        optimizer_type=to_enum(Optimizer_t, optimizer_type, "optimizer_type", w),
        update_type=to_enum(Update_t, update_type, "update_type", w),
        beta=as_float(w, "beta", beta, minimum=0.0),
        lambda1=as_float(w, "lambda1", lambda1, minimum=0.0),
        lambda2=as_float(w, "lambda2", lambda2, minimum=0.0),
        beta1=as_float(w, "beta1", beta1, minimum=0.0, below=1.0),
        beta2=as_float(w, "beta2", beta2, minimum=0.0, below=1.0),
        epsilon=as_float(w, "epsilon", epsilon, above=0.0),
        initial_accu_value=as_float(w, "initial_accu_value", initial_accu_value, minimum=0.0),
        momentum_factor=as_float(w, "momentum_factor", momentum_factor, minimum=0.0, below=1.0),
        atomic_update=as_bool(w, "atomic_update", atomic_update),
    )
    if opt.update_type is Update_t.LazyGlobal and opt.optimizer_type is not Optimizer_t.Adam:
        raise bad(w, "update_type", opt.update_type,
                  f"Update_t.LazyGlobal works only with Optimizer_t.Adam, not {opt.optimizer_type!r}")
    return opt
