"""Representative KernelSpecs of the select, weight_multiply, layer_norm, dice and gru families, the
elementwise sequence mask, and the cross-entropy losses in the half types (every dtype each)."""
from __future__ import annotations

from hgc.codegen.plan import KernelSpec, Params

DTYPES = ("float32", "float16", "bfloat16")
SHORT = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}


def _spec(template: str, tag: str, **params: object) -> KernelSpec:
    return KernelSpec(template, f"k_{template}_{tag}", Params(params), (f"node_{tag}",), ("FuseFcRelu",))


def extra_specs() -> list[KernelSpec]:
    out: list[KernelSpec] = []
    for dt in DTYPES:
        s = SHORT[dt]
        # Select of entries (2, 0, 2) out of 3: entry 1 is read by nobody
        out.append(_spec("select", f"sel_{s}", dtype=dt, index=(2, 0, 2), inv_off=(0, 1, 1, 3),
                         inv_q=(1, 0, 2)))
        out.append(_spec("select", f"scale_{s}", dtype=dt, index=(0,) * 5, inv_off=(0, 5),
                         inv_q=(0, 1, 2, 3, 4)))
        out.append(_spec("elementwise", f"seqmask_{s}", op="sequence_mask", dtype=dt, f=7, t=5))
        out.append(_spec("weight_multiply", s, dtype=dt, s=11, k=3))
        out.append(_spec("layer_norm", s, dtype=dt, eps=1e-5))
        out.append(_spec("dice", s, dtype=dt, n=13, alpha=0.2, eps=1e-8, momentum=0.01))
        out.append(_spec("gru", s, dtype=dt, n=5, h=7, v=3, steps=4))
        if dt != "float32":
            out.append(_spec("loss", f"ce1_{s}", op="ce", dtype=dt, label_width=1))
            out.append(_spec("loss", f"ce2_{s}", op="ce", dtype=dt, label_width=2))
            out.append(_spec("loss", f"multi_{s}", op="multi", dtype=dt, width=3))
    return out
