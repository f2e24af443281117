"""Run an ExecutablePlan on the GPU with CuPy: the cuda target's counterpart of the CpuExecutor.

``forward(batch, training) -> StepResult`` and ``backward(loss_weights) -> (dense grads per node, embedding
grads)`` behave as the CpuExecutor's, so the trainer can drive either (tensors and gradients come back as
host arrays unless ``host=False``). :meth:`update` applies the fused dense optimizer and the sparse
embedding updates on the device; :meth:`train_step` does forward + backward + update without host copies.

Device memory: one buffer per buffer id of the plan, sized for the largest view placed in it at the
current batch (grown when a larger batch arrives); the dense weights, their gradients and the optimizer
states each live in one flat fp32 buffer. Every launch is checked (CuPy raises on launch errors); with
HGC_DEBUG >= 1 every operation is followed by a synchronisation so a fault names its operation.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from hgc.codegen.plan import (
    Arg,
    BufferBinding,
    Collective,
    EmbeddingCall,
    ExecutablePlan,
    GemmCall,
    KernelLaunch,
    Memset,
    Op,
    describe,
)
from hgc.errors import NotBuiltError
from hgc.runtime.cpu.executor import StepResult
from hgc.runtime.cuda import rng
from hgc.runtime.cuda.device import cupy, debug_level, gemm, scalar, sync_check, view
from hgc.runtime.cuda.embedding import DeviceEmbedding
from hgc.runtime.cuda.modules import Kernels
from hgc.runtime.data.batch import Batch

VIEW_KIND = {"act": "activation", "grad": "gradient", "scratch": "scratch"}


class DeviceTensors(Mapping[str, Any]):
    """The activations of the last forward: ``tensors[name]`` is a host copy, ``device(name)`` the view.

    Views read device memory when accessed: read what you need before ``backward()``, which reuses the
    buffers of activations it no longer needs for gradients (the buffer plan's sharing).
    """

    def __init__(self, executor: CudaExecutor) -> None:
        self._ex = executor

    def device(self, name: str) -> Any:
        return self._ex.tensor(name)

    def __getitem__(self, name: str) -> Any:
        if name in self._ex.sparse_inputs:
            return self._ex.sparse_inputs[name]
        b = self._ex.bindings.get((name, "activation"))
        if b is None:
            raise KeyError(name)
        arr = cupy().asnumpy(self._ex.tensor(name))
        if b.dtype == "bfloat16":
            from hgc.runtime.cuda.device import np_dtype

            arr = arr.view(np_dtype("bfloat16"))
        return arr

    def __iter__(self) -> Iterator[str]:
        return (t for (t, kind) in self._ex.bindings if kind == "activation")

    def __len__(self) -> int:
        return sum(1 for _ in self)


class CudaExecutor:
    """Executes ``plan``; ``weights``: dense weights per node (or flat, file order); ``tables``: the host
    EmbeddingTables the device tables start from (by embedding name), or ready DeviceEmbeddings."""

    def __init__(self, plan: ExecutablePlan,
                 weights: Mapping[str, Sequence[np.ndarray]] | Sequence[np.ndarray],
                 tables: Mapping[str, Any] | None = None, seed: int = 0,
                 kernels: Kernels | None = None) -> None:
        cp = cupy()
        self.plan = plan
        self.nodes = plan.nodes
        self.seed = int(seed)
        self.kernels = kernels or Kernels(plan)
        self.bindings: dict[tuple[str, str], BufferBinding] = {(b.tensor, b.kind): b for b in plan.buffers}
        self.batch = 0
        self._buffers: dict[int, Any] = {}
        self._alloc(plan.batch)
        count = max(1, plan.weight_count and (plan.weights[-1].offset + plan.weights[-1].size))
        self.count = -(-count // 32) * 32
        self.master = cp.zeros(self.count, cp.float32)
        self.wgrad = cp.zeros(self.count, cp.float32)
        self.slots = {(w.node, w.index): w for w in plan.weights}
        self.set_weights(weights)
        self.states = {s.name: cp.full(max(1, s.size), s.init, cp.float32) for s in plan.states}
        self._consts: dict[tuple[float, ...], Any] = {}
        self.embeddings: dict[str, DeviceEmbedding] = {}
        for e in plan.embeddings:
            src = (tables or {}).get(e.name)
            if isinstance(src, DeviceEmbedding):
                self.embeddings[e.name] = src
            elif src is not None:
                self.embeddings[e.name] = DeviceEmbedding.from_host(e, self.kernels, src)
            else:
                rows = self._fresh_rows(e, len(self.embeddings))
                self.embeddings[e.name] = DeviceEmbedding(e, self.kernels, rows)
        self.sparse_inputs: dict[str, Any] = {}
        self.step = 0
        self.dense_steps = 0
        self.losses = [n for n in plan.nodes if n.kind == "loss"]
        self._runtime: dict[str, Any] = {}
        self._training = False
        self._forward_done = False

    # -- construction ----------------------------------------------------------------------------
    def _fresh_rows(self, spec: Any, index: int) -> np.ndarray:
        from hgc.runtime.embedding.table import EmbeddingTable

        table = EmbeddingTable(spec.name, spec.vec_size, None if spec.slot_size_array else spec.capacity,
                               spec.combiner, spec.slot_size_array, spec.one_hot,
                               rng=np.random.default_rng([self.seed, 104729, index]))
        return table.rows

    def set_weights(self, weights: Mapping[str, Sequence[np.ndarray]] | Sequence[np.ndarray]) -> None:
        """Copy dense weights (per node, or a flat list in file order) into the fp32 master buffer."""
        host = np.zeros(self.count, np.float32)
        if isinstance(weights, Mapping):
            for w in self.plan.weights:
                arr = np.asarray(weights[w.node][w.index], np.float32)
                if arr.size != w.size:
                    raise ValueError(f"weight {w.index} ('{w.name}') of '{w.node}' has {arr.size} values, "
                                     f"the plan expects shape {w.shape}")
                host[w.offset:w.offset + w.size] = arr.reshape(-1)
        else:
            flat = list(weights)
            if len(flat) != len(self.plan.weights):
                raise ValueError(f"{len(flat)} weights given, the plan has {len(self.plan.weights)}")
            for w, arr in zip(self.plan.weights, flat):
                host[w.offset:w.offset + w.size] = np.asarray(arr, np.float32).reshape(-1)
        self.master.set(host)

    def get_weights(self) -> dict[str, list[np.ndarray]]:
        """The dense weights per node (host copies)."""
        host = cupy().asnumpy(self.master)
        out: dict[str, list[np.ndarray]] = {}
        for w in self.plan.weights:
            out.setdefault(w.node, []).append(host[w.offset:w.offset + w.size].reshape(w.shape).copy())
        return out

    @property
    def weights(self) -> dict[str, list[np.ndarray]]:
        return self.get_weights()

    def _alloc(self, batch: int) -> None:
        cp = cupy()
        sizes: dict[int, int] = {}
        for b in self.bindings.values():
            if b.alias_of:
                continue
            sizes[b.buffer] = max(sizes.get(b.buffer, 0), b.nbytes(batch))
        self._buffers = {i: cp.empty(max(16, -(-n // 256) * 256), cp.uint8) for i, n in sizes.items()}
        self.batch = batch
        self._alloc_batch = batch

    def _ensure(self, batch: int) -> None:
        if batch > self._alloc_batch:
            self._alloc(batch)
        self.batch = batch

    # -- argument resolution ---------------------------------------------------------------------
    def tensor(self, name: str, kind: str = "activation") -> Any:
        """The device view of a tensor at the current batch."""
        b = self.bindings[(name, "scratch" if kind == "scratch" else kind)]
        return view(self._buffers[b.buffer], 0, b.concrete(self.batch), b.dtype)

    def _weight_view(self, arg: Arg, grads: bool) -> Any:
        buf = self.wgrad if grads else self.master
        if arg.kind in ("weights", "wgrads"):
            return buf
        w = self.slots[(arg.name, arg.index)]
        return buf[w.offset:w.offset + w.size]

    def _const(self, values: tuple[float, ...]) -> Any:
        if values not in self._consts:
            self._consts[values] = cupy().asarray(np.asarray(values, np.float32))
        return self._consts[values]

    def resolve(self, arg: Arg) -> Any:
        k = arg.kind
        if k in ("act", "grad", "scratch"):
            b = self.bindings[(arg.name, VIEW_KIND[k])]
            return self._buffers[b.buffer]
        if k in ("weight", "weights"):
            return self._weight_view(arg, False)
        if k in ("wgrad", "wgrads"):
            return self._weight_view(arg, True)
        if k == "state":
            return self.states[arg.name]
        if k == "int":
            return scalar(arg.value.at(self.batch), arg.ctype)
        if k == "float":
            return scalar(arg.value, arg.ctype)
        if k == "runtime":
            if arg.name not in self._runtime:
                raise KeyError(f"runtime value '{arg.name}' is not set for this step")
            return scalar(self._runtime[arg.name], arg.ctype)
        if k == "const":
            return self._const(tuple(arg.value))
        if k == "null":
            return np.uint64(0)
        raise ValueError(f"unknown argument kind '{k}'")

    def _matrix(self, arg: Arg, rows: int, cols: int) -> Any:
        if arg.kind in ("weight", "wgrad"):
            return self._weight_view(arg, arg.kind == "wgrad").reshape(rows, cols)
        b = self.bindings[(arg.name, VIEW_KIND[arg.kind])]
        return view(self._buffers[b.buffer], 0, (rows, cols), b.dtype)

    # -- operations ------------------------------------------------------------------------------
    def _run(self, op: Op) -> None:
        if isinstance(op, KernelLaunch):
            if op.mode == "train" and not self._training or op.mode == "eval" and self._training:
                return
            fn = self.kernels(op.spec, op.function)
            args = tuple(self.resolve(a) for a in op.args)
            fn(op.launch.grid(self.batch), op.launch.block, args, shared_mem=op.launch.smem)
        elif isinstance(op, GemmCall):
            m, n, k = op.m.at(self.batch), op.n.at(self.batch), op.k.at(self.batch)
            a = self._matrix(op.a, *((k, m) if op.transa else (m, k)))
            b = self._matrix(op.b, *((n, k) if op.transb else (k, n)))
            c = self._matrix(op.c, m, n)
            gemm(a, b, c, op.transa, op.transb, op.alpha, op.beta)
            if op.epilogue is not None:
                self._run(op.epilogue)
        elif isinstance(op, Memset):
            t = op.target
            if t.kind in ("wgrads", "wgrad"):
                self._weight_view(t, True).fill(0)
            else:
                self.tensor(t.name, VIEW_KIND[t.kind]).fill(0)
        elif isinstance(op, EmbeddingCall):
            emb = self.embeddings[op.table]
            if op.phase == "forward":
                out = self.tensor(op.output)
                emb.forward(self.sparse_inputs[op.input], self._training, out.reshape(-1, emb.vec))
            elif op.phase == "backward":
                emb.backward(self.tensor(op.output, "gradient").reshape(-1, emb.vec))
            else:
                emb.update(self._runtime["lr"], self._runtime.get("scaler", 1.0))
        elif isinstance(op, Collective):
            raise NotBuiltError("multi-GPU collectives on the cuda target", describe(op))
        if debug_level() >= 1:
            sync_check(describe(op))

    def _phase(self, steps: Sequence[Any]) -> None:
        for step in steps:
            for op in step.ops:
                self._run(op)

    # -- inputs ----------------------------------------------------------------------------------
    def _load_inputs(self, batch: Batch) -> None:
        inp = self.plan.inputs
        col = 0
        for name, dim in inp.labels:
            part = np.ascontiguousarray(batch.label[:, col:col + dim], np.float32)
            col += dim
            if (name, "activation") in self.bindings:
                self.tensor(name).set(part.reshape(self.tensor(name).shape))
        if batch.label.shape[1] != col:
            raise ValueError(f"batch has {batch.label.shape[1]} label columns, the Input layer expects {col}")
        if inp.dense and (inp.dense, "activation") in self.bindings and inp.dense_dim:
            d = self.tensor(inp.dense)
            d.set(np.ascontiguousarray(batch.dense, np.float32).reshape(d.shape).astype(d.dtype, copy=False))
        if len(batch.sparse) != len(inp.sparse):
            raise ValueError(f"batch has {len(batch.sparse)} sparse inputs, the Input layer expects "
                             f"{len(inp.sparse)}")
        self.sparse_inputs = {name: sb for (name, _), sb in zip(inp.sparse, batch.sparse)}

    # -- the step --------------------------------------------------------------------------------
    def forward(self, batch: Batch, training: bool) -> StepResult:
        """Run the forward phase on ``batch``: losses as floats, tensors as host copies on access."""
        self._ensure(batch.n)
        self._training = bool(training)
        if training:
            self.step += 1
        self._runtime = {f"seed:{n.name}": rng.step_seed(self.seed, n.name, self.step) for n in self.nodes
                         if n.op == "Dropout"}
        self._load_inputs(batch)
        self._phase(self.plan.forward)
        self._forward_done = True
        cp = cupy()
        losses = {node: float(cp.asnumpy(self.tensor(out)).reshape(-1)[0]) for node, out in self.plan.losses}
        return StepResult(losses, DeviceTensors(self), {})

    def backward(self, loss_weights: Mapping[str, float] | None = None, host: bool = True
                 ) -> tuple[dict[str, list[Any]], dict[str, tuple]]:
        """Gradients of Σ w·loss: (dense weight grads per node, (rows, row grads) per embedding)."""
        if not self._forward_done:
            raise RuntimeError("backward() before forward()")
        for node, _ in self.plan.losses:
            w = 1.0 if loss_weights is None else float(loss_weights.get(node, 1.0))
            self._runtime[f"loss_weight:{node}"] = w
        self._phase(self.plan.backward)
        cp = cupy()
        wgrads: dict[str, list[Any]] = {}
        flat = cp.asnumpy(self.wgrad) if host else self.wgrad
        for w in self.plan.weights:
            g = flat[w.offset:w.offset + w.size].reshape(w.shape)
            wgrads.setdefault(w.node, []).append(g.copy() if host else g)
        egrads: dict[str, tuple] = {}
        for name, emb in self.embeddings.items():
            if emb._grads is not None:
                rows, g = emb._grads
                egrads[name] = (cp.asnumpy(rows), cp.asnumpy(g)) if host else (rows, g)
        return wgrads, egrads

    def update(self, lr: float, scaler: float = 1.0, reg_batch: int | None = None,
               frozen_dense: bool = False, frozen_embeddings: Sequence[str] = ()) -> None:
        """One optimizer step: the fused dense update over the flat master weights, then every table's
        sparse update, from the gradients of the last backward."""
        opt = self.plan.optimizer_params
        self.dense_steps += 0 if frozen_dense else 1
        t = max(1, self.dense_steps)
        alpha = 0.0
        if opt.get("optimizer_type") == "Adam":
            alpha = lr * np.sqrt(1.0 - float(opt["beta2"]) ** t) / (1.0 - float(opt["beta1"]) ** t)
        kind, lam = self.plan.regularizer
        batch = reg_batch or self.plan.batch
        self._runtime.update({"lr": float(lr), "alpha": float(alpha), "inv_scaler": 1.0 / float(scaler),
                              "reg_scale": float(lam) / batch if kind != "none" else 0.0,
                              "scaler": float(scaler)})
        for step in self.plan.optimizer:
            for op in step.ops:
                if isinstance(op, EmbeddingCall):
                    if op.table in frozen_embeddings:
                        continue
                elif frozen_dense:
                    continue
                self._run(op)

    def train_step(self, batch: Batch, lr: float, loss_weights: Mapping[str, float] | None = None,
                   scaler: float = 1.0) -> dict[str, float]:
        """Forward, backward and update on the device; returns the losses."""
        out = self.forward(batch, training=True)
        self.backward(loss_weights, host=False)
        self.update(lr, scaler)
        return out.losses

    def state_of(self, node: str) -> dict[str, np.ndarray]:
        """Host copies of a node's persistent state (BatchNorm: mean, var)."""
        cp = cupy()
        prefix = f"{node}/"
        return {k[len(prefix):]: cp.asnumpy(v) for k, v in self.states.items() if k.startswith(prefix)}
