"""Argument checks shared by the API classes.

Every check returns the value in its normal form (lists become lists of plain Python values) or raises
``ValueError("<where>: argument '<arg>' = <value> is not allowed: <rule>")``. A required argument that is
left out raises ``TypeError`` as Python does for a missing positional argument.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any


class _Required:
    """Marks an argument without default in signatures that also hold defaulted arguments before it."""

    def __repr__(self) -> str:
        return "<required>"


REQUIRED: Any = _Required()


def bad(where: str, arg: str, value: Any, rule: str) -> ValueError:
    return ValueError(f"{where}: argument '{arg}' = {value!r} is not allowed: {rule}")


def require_given(where: str, values: Mapping[str, Any]) -> None:
    """TypeError for the first argument still equal to REQUIRED."""
    for arg, v in values.items():
        if v is REQUIRED:
            raise TypeError(f"{where} missing required argument '{arg}'")


def reject_unknown(where: str, kwargs: Mapping[str, Any], known: Iterable[str]) -> None:
    """TypeError naming the first keyword that is not an argument of ``where``."""
    known = set(known)
    for k in kwargs:
        if k not in known:
            raise TypeError(f"{where} got an unexpected keyword argument '{k}'")


def is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def as_int(where: str, arg: str, v: Any, minimum: int | None = None) -> int:
    if not is_int(v):
        raise bad(where, arg, v, "must be an integer" + (f" >= {minimum}" if minimum is not None else ""))
    if minimum is not None and v < minimum:
        raise bad(where, arg, v, f"must be an integer >= {minimum}")
    return int(v)


def as_float(where: str, arg: str, v: Any, minimum: float | None = None, maximum: float | None = None,
             above: float | None = None, below: float | None = None) -> float:
    """A finite real number; ``minimum``/``maximum`` are inclusive bounds, ``above``/``below`` exclusive."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
        raise bad(where, arg, v, "must be a finite number")
    x = float(v)
    if minimum is not None and x < minimum:
        raise bad(where, arg, v, f"must be >= {minimum}")
    if maximum is not None and x > maximum:
        raise bad(where, arg, v, f"must be <= {maximum}")
    if above is not None and x <= above:
        raise bad(where, arg, v, f"must be > {above}")
    if below is not None and x >= below:
        raise bad(where, arg, v, f"must be < {below}")
    return x


def as_bool(where: str, arg: str, v: Any) -> bool:
    if isinstance(v, bool) or type(v).__name__ == "bool_":  # numpy.bool_ too
        return bool(v)
    raise bad(where, arg, v, "must be True or False")


def as_str(where: str, arg: str, v: Any, nonempty: bool = False) -> str:
    if not isinstance(v, str):
        raise bad(where, arg, v, "must be a string")
    if nonempty and not v:
        raise bad(where, arg, v, "must be a non-empty string")
    return v


def _seq(v: Any) -> bool:
    return isinstance(v, (list, tuple))


def as_str_list(where: str, arg: str, v: Any, nonempty_items: bool = True) -> list[str]:
    if not _seq(v) or not all(isinstance(s, str) and (s or not nonempty_items) for s in v):
        rule = "must be a list of non-empty strings" if nonempty_items else "must be a list of strings"
        raise bad(where, arg, v, rule)
    return list(v)


def as_int_list(where: str, arg: str, v: Any, minimum: int | None = None) -> list[int]:
    ok = _seq(v) and all(is_int(i) and (minimum is None or i >= minimum) for i in v)
    if not ok:
        rule = "must be a list of integers" + (f" >= {minimum}" if minimum is not None else "")
        raise bad(where, arg, v, rule)
    return [int(i) for i in v]


def as_float_list(where: str, arg: str, v: Any) -> list[float]:
    ok = _seq(v) and all(not isinstance(x, bool) and isinstance(x, numbers.Real) and math.isfinite(float(x))
                         for x in v)
    if not ok:
        raise bad(where, arg, v, "must be a list of finite numbers")
    return [float(x) for x in v]


def as_str_or_list(where: str, arg: str, v: Any) -> str | list[str]:
    """A string, or a list of strings (HugeCTR arguments typed ``str | List[str]``)."""
    if isinstance(v, str):
        return v
    if _seq(v) and all(isinstance(s, str) for s in v):
        return list(v)
    raise bad(where, arg, v, "must be a string or a list of strings")


def as_instance(where: str, arg: str, v: Any, cls: type | tuple[type, ...], what: str,
                allow_none: bool = False) -> Any:
    """``v`` must be an instance of ``cls`` (TypeError otherwise: a wrong kind of object, not a bad value)."""
    if v is None and allow_none:
        return None
    if not isinstance(v, cls):
        raise TypeError(f"{where}: argument '{arg}' must be {what}, got {type(v).__name__} {v!r}")
    return v


def as_data_source_params(where: str, arg: str, v: Any) -> Any:
    """None, or a ``hugectr.data.DataSourceParams``."""
    from hgc.data import DataSourceParams

    if v is None or isinstance(v, DataSourceParams):
        return v
    raise TypeError(f"{where}: argument '{arg}' must be None or a hugectr.data.DataSourceParams, "
                    f"got {type(v).__name__} {v!r}")
