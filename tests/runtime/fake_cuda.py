"""A stand-in for the GPU that lets the cpu-only CI run the trainer's cuda code path.

:class:`FakeCudaExecutor` has the CudaExecutor's interface (flat ``master`` weights, ``dense_states``,
``embeddings`` with the DeviceEmbedding's interface, ``bindings``, lazy device tensors, ``update`` with
freezing) but computes with the cpu target's executor and optimizers, so a model trained through it must match
the cpu target bit for bit. "Device" arrays are :class:`DevArray` (a NumPy array with CuPy's ``get``/``set``).
What it checks is the trainer's bookkeeping on cuda (host mirrors in file order, resume counters, the NaN
watch read at report points, evaluation on "device" arrays, checkpoints through the device views); the real
kernels are checked on the GPU (tests/gpu).
"""
from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from hgc.config import config
from hgc.ir.registry import get_op
from hgc.runtime.cpu.executor import CpuExecutor, StepResult
from hgc.runtime.data.batch import SparseBatch
from hgc.runtime.optim.dense import make_dense_optimizer
from hgc.runtime.optim.sparse import make_sparse_optimizer
from hgc.runtime.regularizer import Regularizer

HYPER = ("beta1", "beta2", "epsilon", "initial_accu_value", "momentum_factor", "lambda1", "lambda2", "beta")


class DevArray(np.ndarray):
    """A host array posing as a CuPy array."""

    def get(self) -> np.ndarray:
        return np.array(self)

    def set(self, arr: np.ndarray) -> None:
        self[...] = np.asarray(arr).reshape(self.shape)


def dev(a: Any) -> DevArray:
    return np.asarray(a).view(DevArray)


def _shim() -> Any:
    """The few CuPy functions the trainer calls, on DevArrays."""
    ns = types.SimpleNamespace(**{k: getattr(np, k) for k in ("float32", "float64", "int64", "uint32", "abs",
                                                               "square", "tanh", "exp", "stack")})
    ns.asnumpy = lambda a: np.array(a)
    ns.zeros = lambda *a, **k: dev(np.zeros(*a, **k))
    ns.concatenate = lambda arrs, axis=0: dev(np.concatenate([np.asarray(a) for a in arrs], axis=axis))
    return ns


CUPY = _shim()


@dataclass(frozen=True)
class Slot:
    node: str
    index: int
    shape: tuple[int, ...]
    offset: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True)
class Binding:
    tensor: str
    kind: str
    buffer: int
    dtype: str = "float32"
    alias_of: str = ""


class _Hi:
    """The device scalar ``hi`` of a DeviceEmbedding, kept as the SparseOptimizer's ``_hi``."""

    def __init__(self, opt: Any) -> None:
        self.opt = opt

    def fill(self, value: int) -> None:
        self.opt._hi = int(value)


class FakeTable:
    """The DeviceEmbedding interface (the parts the trainer's device views use) over a cpu EmbeddingTable
    and its SparseOptimizer."""

    def __init__(self, table: Any, opt: Any) -> None:
        self.host, self.opt = table, opt
        self.name, self.capacity, self.vec = table.name, table.capacity, table.vec_size
        self.optimizer, self.update_type = opt.optimizer, opt.update_type
        self.one_hot = table.one_hot
        self.table = dev(table.rows)  # views: updates show through
        self.states = [dev(a) for a in opt.states()]
        self.row_slot = dev(table._row_slot)
        self.hi = _Hi(opt)

    size = property(lambda self: self.host.size)

    @property
    def times(self) -> int:
        return self.opt.times

    @times.setter
    def times(self, v: int) -> None:
        self.opt.times = v

    def dump(self) -> tuple[np.ndarray, np.ndarray]:
        return self.host.dump()

    def slot_ids(self) -> np.ndarray:
        return self.host.slot_ids()

    def _insert_host(self, new_keys: np.ndarray, slots: np.ndarray) -> None:
        before = self.host.hash.size
        rows = self.host.hash.load(np.asarray(new_keys, np.uint64).view(np.int64))
        assert np.array_equal(rows, np.arange(before, before + rows.shape[0])), "rows are handed out in order"
        self.host._row_slot[rows] = slots

    def state_arrays(self) -> list[np.ndarray]:
        return [s.copy() for s in self.opt.states()]


class FakeLosses(dict):
    """Loss node → loss, with ``device(node)`` as the executors' loss mappings have."""

    def device(self, node: str) -> DevArray:
        return dev(np.array([self[node]], np.float32))


class FakeTensors(Mapping[str, Any]):
    def __init__(self, values: dict[str, Any]) -> None:
        self._v = values

    def device(self, name: str) -> DevArray:
        return dev(self._v[name])

    def __getitem__(self, name: str) -> Any:
        v = self._v[name]
        return v if isinstance(v, SparseBatch) else np.array(v)

    def __iter__(self) -> Iterator[str]:
        return iter(self._v)

    def __len__(self) -> int:
        return len(self._v)


class FakeCudaExecutor:
    """See the module docstring. ``weights``/``tables`` are copied: the "device" owns its state."""

    def __init__(self, graph: Any, weights: Mapping[str, Sequence[np.ndarray]], tables: Mapping[str, Any],
                 seed: int, batch_size: int = 1) -> None:
        nodes = graph.nodes()
        slots, offset = [], 0
        for n in nodes:
            for i, w in enumerate(weights.get(n.name, [])):
                slots.append(Slot(n.name, i, tuple(w.shape), offset))
                offset += -(-int(np.size(w)) // 32) * 32
        self.master = dev(np.zeros(max(32, offset), np.float32))
        per_node: dict[str, list[np.ndarray]] = {}
        for s in slots:
            view = np.asarray(self.master)[s.offset:s.offset + s.size].reshape(s.shape)
            view[...] = weights[s.node][s.index]
            per_node.setdefault(s.node, []).append(view)
        opt = dict(graph.meta.get("optimizer") or {"optimizer_type": "Adam", "update_type": "Global"})
        self.dense_opt = make_dense_optimizer(str(opt["optimizer_type"]), [v for s in slots
                                                                        for v in [per_node[s.node][s.index]]],
                                              **{k: opt[k] for k in HYPER if k in opt})
        self.embeddings: dict[str, FakeTable] = {}
        host_tables = {}
        for name, t in tables.items():
            node = graph.node(name)
            o = dict(node.attrs["optimizer"]) if node.attrs.get("optimizer") else opt
            sparse = make_sparse_optimizer(str(o["optimizer_type"]), t.capacity, t.vec_size,
                                           update_type=str(o["update_type"]), **{k: o[k] for k in HYPER if k in o})
            self.embeddings[name] = FakeTable(t, sparse)
            host_tables[name] = t
        self.cpu = CpuExecutor(graph, per_node, host_tables, seed)
        self.nodes = self.cpu.nodes
        self.slots = slots
        losses = [n for n in nodes if get_op(n.op).kind == "loss"]
        inp = next(n for n in nodes if n.op == "Input")
        self.plan = types.SimpleNamespace(
            weights=tuple(slots), losses=tuple((n.name, n.outputs[0]) for n in losses),
            inputs=types.SimpleNamespace(sparse=tuple((s["name"], s["slot_num"]) for s in inp.attrs["sparse"])),
            optimizer_params=opt, batch=max(1, int(batch_size)))
        self.fused_steps = 0
        reg = next((n for n in losses if n.attrs.get("use_regularizer")), None)
        self.reg = (reg.attrs["regularizer_type"], float(reg.attrs["lambda"])) if reg else (None, 0.0)
        self.bindings: dict[tuple[str, str], Binding] = {}
        for n in nodes:
            for t in n.outputs:
                ty = graph.tensor_type(t)
                if not ty.sparse:
                    self.bindings[(t, "activation")] = Binding(t, "activation", len(self.bindings))
                    if n.op != "Input":
                        self.bindings[(t, "gradient")] = Binding(t, "gradient", len(self.bindings))
        self._grads: tuple[Any, Any] | None = None

    step = property(lambda self: self.cpu.step, lambda self, v: setattr(self.cpu, "step", v))
    dense_steps = property(lambda self: self.dense_opt.step_count,
                           lambda self, v: setattr(self.dense_opt, "step_count", v))

    def forward(self, batch: Any, training: bool) -> StepResult:
        out = self.cpu.forward(batch, training)
        return StepResult(FakeLosses(out.losses), FakeTensors(out.tensors), {})

    def train_step(self, batch: Any, lr: float, loss_weights: Mapping[str, float] | None = None,
                   scaler: float = 1.0) -> FakeLosses:
        self.fused_steps += 1
        out = self.forward(batch, training=True)
        self.backward(loss_weights, host=False, scaler=scaler)
        self.update(lr, scaler, reg_batch=self.plan.batch)
        return out.losses

    def backward(self, loss_weights: Mapping[str, float] | None = None, host: bool = True,
                 scaler: float = 1.0) -> tuple[dict, dict]:
        self._grads = self.cpu.backward(loss_weights)
        return self._grads

    def update(self, lr: float, scaler: float = 1.0, reg_batch: int | None = None, frozen_dense: bool = False,
               frozen_embeddings: Sequence[str] = ()) -> None:
        assert self._grads is not None, "update() before backward()"
        wgrads, egrads = self._grads
        if not frozen_dense and self.slots:
            weights = self.dense_opt.weights
            grads = Regularizer(self.reg[0], self.reg[1], reg_batch or 1).grads(weights)
            for j, s in enumerate(self.slots):
                if s.node in wgrads:
                    grads[j] += np.asarray(wgrads[s.node][s.index], np.float32).reshape(s.shape)
            self.dense_opt.step(grads, lr)
        for name, t in self.embeddings.items():
            if name in frozen_embeddings:
                continue
            rows, g = egrads.get(name, (np.zeros(0, np.int64), np.zeros((0, t.vec), np.float32)))
            t.opt.update(t.host.rows, rows, g, lr)

    def tensor(self, name: str, kind: str = "activation") -> DevArray:
        source = self.cpu.last_grads if kind == "gradient" else self.cpu._last.tensors
        return dev(source[name])

    def get_weights(self) -> dict[str, list[np.ndarray]]:
        out: dict[str, list[np.ndarray]] = {}
        for j, s in enumerate(self.slots):
            out.setdefault(s.node, []).append(np.array(self.dense_opt.weights[j]))
        return out

    weights = property(get_weights)

    def set_weights(self, weights: Mapping[str, Sequence[np.ndarray]]) -> None:
        for j, s in enumerate(self.slots):
            self.dense_opt.weights[j][...] = np.asarray(weights[s.node][s.index]).reshape(s.shape)

    def dense_states(self) -> list[dict[str, list[np.ndarray]]]:
        out = []
        for kind in self.dense_opt.states():
            by: dict[str, list[np.ndarray]] = {}
            for j, s in enumerate(self.slots):
                by.setdefault(s.node, []).append(np.array(kind[j]))
            out.append(by)
        return out

    def set_dense_states(self, states: Sequence[Mapping[str, Sequence[np.ndarray]]]) -> None:
        self.dense_opt.load_states([[by[s.node][s.index] for s in self.slots] for by in states])

    def state_of(self, node: str) -> dict[str, np.ndarray]:
        return {k: np.array(v) for k, v in self.cpu.state[node].items()}

    def set_state(self, node: str, values: Mapping[str, np.ndarray]) -> None:
        self.cpu.state[node].update({k: np.asarray(v, np.float32) for k, v in values.items()})


class FakeLossWatch:
    """LossWatch on the host: records the first non-finite loss, read only when asked."""

    def __init__(self) -> None:
        self.first: tuple[int, float] | None = None

    def record(self, loss: Any, iteration: int) -> None:
        v = float(np.asarray(loss).reshape(-1)[0])
        if self.first is None and not np.isfinite(v):
            self.first = (iteration, v)

    def first_bad(self) -> tuple[int, float] | None:
        return self.first


@contextlib.contextmanager
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Within the block, models compiled and trained take the cuda target's path on the fake device."""
    from hgc.runtime import target as target_mod
    from hgc.runtime import trainer as trainer_mod
    from hgc.runtime.cuda import metrics as dm

    real = target_mod.make_executor

    def make_executor(target: str, graph: Any, plans: Any, weights: Any, tables: Any, seed: int,
                      **kw: Any) -> tuple[str, Any]:
        if target != "cuda":
            return real(target, graph, plans, weights, tables, seed, **kw)
        buffers = plans.get("buffers")
        return "cuda", FakeCudaExecutor(graph, weights, tables, seed,
                                        int(buffers.batch_per_gpu) if buffers is not None else 1)

    monkeypatch.setattr(trainer_mod, "resolve_target", lambda t: t)
    monkeypatch.setattr(trainer_mod, "make_executor", make_executor)
    monkeypatch.setattr(trainer_mod, "_cupy", lambda: CUPY)
    monkeypatch.setattr(dm, "LossWatch", FakeLossWatch)
    monkeypatch.setattr(target_mod, "device_name", lambda: "fake GPU (device 0)")
    with config.patch(target="cuda"):
        yield
