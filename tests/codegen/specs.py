"""Representative KernelSpecs: every template, every dtype and every op variant it has."""
from __future__ import annotations

from hgc.codegen.plan import KernelSpec, Params

DTYPES = ("float32", "float16", "bfloat16")
OPT_HYPER = {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-7, "momentum_factor": 0.9}
DENSE_HYPER = {**OPT_HYPER, "lambda1": 0.0, "lambda2": 0.0, "beta": 0.0}


def _spec(template: str, tag: str, **params: object) -> KernelSpec:
    return KernelSpec(template, f"k_{template}_{tag}", Params(params), (f"node_{tag}",), ("FuseFcRelu",))


def representative_specs() -> list[KernelSpec]:
    out: list[KernelSpec] = []
    for dt in DTYPES:
        s = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}[dt]
        for op in ("relu", "sigmoid", "sub"):
            out.append(_spec("elementwise", f"{op}_{s}", op=op, dtype=dt))
        out.append(_spec("elementwise", f"elu_{s}", op="elu", dtype=dt, alpha=0.7))
        out.append(_spec("elementwise", f"add3_{s}", op="add", dtype=dt, arity=3))
        out.append(_spec("elementwise", f"mul2_{s}", op="mul", dtype=dt, arity=2))
        out.append(_spec("elementwise", f"mul3_{s}", op="mul", dtype=dt, arity=3))
        out.append(_spec("elementwise", f"dropout_{s}", op="dropout", dtype=dt, rate=0.3))
        for act in ("Relu", "Non"):
            out.append(_spec("bias_act", f"{act}_{s}", dtype=dt, act=act))
        out.append(_spec("fc_narrow", f"k1453_m1_{s}", dtype=dt, ydtype=dt, k=1453, m=1, act="Non"))
        out.append(_spec("fc_narrow", f"k13_m3_relu_{s}", dtype=dt, ydtype="float32", k=13, m=3, act="Relu"))
        out.append(_spec("loss", f"bce_{s}", op="bce", dtype=dt))
        out.append(_spec("interaction", s, dtype=dt, d=16, f=5, tc=False))
        out.append(_spec("interaction", f"dlrm_{s}", dtype=dt, d=128, f=26, tc=False))  # padded rows, float4
        out.append(_spec("interaction", f"odd_{s}", dtype=dt, d=13, f=7, tc=False))
        if dt != "float32":  # tensor cores (WMMA): one and two 16-row tiles
            for d in (16, 128):
                for f in (1, 3, 26):
                    out.append(_spec("interaction", f"tc_{d}_{f}_{s}", dtype=dt, d=d, f=f, tc=True))
        out.append(_spec("fm_order2", s, dtype=dt, k=8, slots=3))
        for op in ("sum", "mean"):
            out.append(_spec("reduce", f"{op}_{s}", dtype=dt, op=op))
        out.append(_spec("softmax", s, dtype=dt, masked=False))
        out.append(_spec("softmax", f"masked_{s}", dtype=dt, masked=True, factor=0.125, d1=4, d2=5, mb=0,
                         m1=1, m2=5))
        out.append(_spec("concat_slice", s, dtype=dt))
        out.append(_spec("multi_cross", s, dtype=dt, n=13))
        out.append(_spec("multi_cross", f"one_{s}", dtype=dt, n=1))
        out.append(_spec("multi_cross", f"dcn_{s}", dtype=dt, n=429, layers=6))
        out.append(_spec("batch_norm", s, dtype=dt, n=11, eps=1e-5, factor=0.9))
        out.append(_spec("embedding", f"sum_{s}", dtype=dt, vec=9, combiner="sum", optimizer="SGD",
                         update="Local", **OPT_HYPER))
    out.append(_spec("elementwise", "cast_f32_f16", op="cast", dtype="float32", dst_dtype="float16"))
    out.append(_spec("elementwise", "cast_f16_f32", op="cast", dtype="float16", dst_dtype="float32"))
    out.append(_spec("loss", "ce1", op="ce", dtype="float32", label_width=1))
    out.append(_spec("loss", "ce2", op="ce", dtype="float32", label_width=2))
    out.append(_spec("loss", "multi", op="multi", dtype="float32", width=3))
    for kind in ("SGD", "MomentumSGD", "Nesterov", "Adam", "AdaGrad", "Ftrl"):
        for reg in ("none", "L1", "L2"):
            out.append(_spec("optimizer", f"{kind}_{reg}", kind=kind, reg=reg, half_copy=reg == "L2",
                             **DENSE_HYPER))
    for opt in ("SGD", "AdaGrad", "MomentumSGD", "Nesterov", "Adam"):
        for upd in ("Local", "Global"):
            out.append(_spec("embedding", f"mean_{opt}_{upd}", dtype="float32", vec=16, combiner="mean",
                             optimizer=opt, update=upd, **OPT_HYPER))
    out.append(_spec("embedding", "lazy", dtype="float32", vec=16, combiner="sum", optimizer="Adam",
                     update="LazyGlobal", **OPT_HYPER))
    from tests.codegen.specs_extra import extra_specs

    out.extend(extra_specs())
    return out
