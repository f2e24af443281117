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

import contextlib
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from hgc.codegen.plan import (
    ITEMSIZE,
    Arg,
    BufferBinding,
    Collective,
    EmbeddingCall,
    ExecutablePlan,
    GemmCall,
    KernelLaunch,
    Memset,
    Op,
    StridedGemm,
    describe,
)
from hgc.errors import NotBuiltError
from hgc.runtime.cpu.executor import StepResult
from hgc.runtime.cuda import blas, graph, profile, rng
from hgc.runtime.cuda.device import cupy, debug_level, gemm, scalar, sync_check, view
from hgc.runtime.cuda.embedding import NO_BAD, DeviceEmbedding
from hgc.runtime.cuda.modules import Kernels
from hgc.runtime.cuda.staging import D2D, D2H, DeviceBatch, DeviceSparse, Stager
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


class DeviceLosses(Mapping[str, float]):
    """The losses of a forward (loss node → mean loss): device copies taken at the forward, read to the host
    (a synchronisation) only when a value is accessed; ``device(node)`` is the copy itself."""

    def __init__(self, executor: CudaExecutor) -> None:
        self._dev = {node: executor.tensor(out).reshape(-1)[:1].copy() for node, out in executor.plan.losses}
        self._host: dict[str, float] = {}

    def device(self, node: str) -> Any:
        return self._dev[node]

    def __getitem__(self, node: str) -> float:
        if node not in self._host:
            self._host[node] = float(self._dev[node].get()[0])
        return self._host[node]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dev)

    def __len__(self) -> int:
        return len(self._dev)


class StepLosses(Mapping[str, float]):
    """The losses of a train_step (loss node → mean loss), copied on the device during the step and read to
    the host when first accessed; the first access also raises any error the embedding tables recorded
    on the device during the step (a one-hot key out of range, a full hash table)."""

    def __init__(self, values: Mapping[str, Any], tables: Sequence[DeviceEmbedding]) -> None:
        self._dev = dict(values)
        self._tables = list(tables)
        self._host: dict[str, float] = {}

    def device(self, node: str) -> Any:
        return self._dev[node]

    def __getitem__(self, node: str) -> float:
        tables, self._tables = self._tables, []
        for t in tables:
            t.check()
        if node not in self._host:
            self._host[node] = float(self._dev[node].get()[0])
        return self._host[node]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dev)

    def __len__(self) -> int:
        return len(self._dev)


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
        # mixed precision: the float16/bfloat16 copy of the weights that half GEMMs read (None in float32)
        self.master_lp = blas.low_copy(self.count, plan.compute_dtype)
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
        self.refresh_low_copy()

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

    def embedding_views(self, table: str, batch: int) -> tuple[Any, Any | None]:
        """Table ``table``'s output and output-gradient views at ``batch`` rows, the buffers grown first (the
        gradient None where nothing reads it). Both buffers are the table's alone for the whole step (the
        lowering keeps them unshared), so a table sharded over GPUs writes the output before the forward and
        reads the gradient after the backward where they lie."""
        spec = next(e for e in self.plan.embeddings if e.name == table)
        self._ensure(batch)
        grad = self.tensor(spec.output, "gradient") if (spec.output, "gradient") in self.bindings else None
        return self.tensor(spec.output), grad

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
        if k == "weights" and arg.value:  # the low-precision copy (the optimizer refreshes it)
            return self.master_lp
        if k == "weight" and arg.value == "low":  # one weight's slice of the low-precision copy
            w = self.slots[(arg.name, arg.index)]
            return self.master_lp[w.offset:w.offset + w.size]
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

    def refresh_low_copy(self) -> None:
        """Round the fp32 master weights into the low-precision copy (after anything but the optimizer
        changed them; the optimizer kernel keeps the copy current itself)."""
        if self.master_lp is not None:
            blas.round_to_low(self.master, self.master_lp, self.plan.compute_dtype)

    def _gemm_operand(self, arg: Arg, dtype: str, elements: int) -> tuple[int, str]:
        """(device address, element type) of a GEMM operand holding ``elements`` values; a weight of a
        low-precision GEMM is read from the low-precision copy."""
        if arg.kind == "weight":
            w = self.slots[(arg.name, arg.index)]
            if dtype in blas.LOW:
                return self.master_lp.data.ptr + w.offset * 2, dtype
            return self.master.data.ptr + w.offset * 4, "float32"
        if arg.kind == "wgrad":
            w = self.slots[(arg.name, arg.index)]
            return self.wgrad.data.ptr + w.offset * 4, "float32"
        b = self.bindings[(arg.name, VIEW_KIND[arg.kind])]
        base = self._buffers[b.buffer]
        if elements * ITEMSIZE[b.dtype] > base.nbytes:
            raise ValueError(f"GEMM operand {arg.kind}:{arg.name} needs {elements} {b.dtype} values, its "
                             f"buffer holds {base.nbytes} bytes")
        return base.data.ptr, b.dtype

    def _gemm(self, op: GemmCall) -> None:
        """cuBLAS GemmEx with the plan's operand types (half inputs accumulate in fp32; TF32 on request)."""
        at = self.batch
        m, n, k = op.m.at(at), op.n.at(at), op.k.at(at)
        if m == 0 or n == 0:
            return
        lda, ldb, ldc = op.lda.at(at), op.ldb.at(at), op.ldc.at(at)

        def extent(rows: int, cols: int, ld: int) -> int:  # elements spanned by rows x cols with stride ld
            return (rows - 1) * ld + cols

        c, c_dtype = self._gemm_operand(op.c, op.dtype, extent(m, n, ldc))
        if k == 0:
            if ldc != n:
                raise ValueError(f"{describe(op)}: an empty product into a padded C is not supported")
            blas.empty_product(self._matrix(op.c, m, n), op.beta)
            return
        a, a_dtype = self._gemm_operand(op.a, op.dtype, extent(*((k, m) if op.transa else (m, k)), lda))
        b, b_dtype = self._gemm_operand(op.b, op.dtype, extent(*((n, k) if op.transb else (k, n)), ldb))
        if a_dtype != op.dtype or b_dtype != op.dtype:
            raise ValueError(f"{describe(op)}: A is {a_dtype} and B {b_dtype}, the plan says {op.dtype}")
        blas.gemm_ex(a, b, c, m, n, k, lda, ldb, ldc, op.transa, op.transb, op.alpha, op.beta, op.dtype, c_dtype,
                     op.compute_type)

    def _matrix(self, arg: Arg, rows: int, cols: int) -> Any:
        if arg.kind in ("weight", "wgrad"):
            return self._weight_view(arg, arg.kind == "wgrad").reshape(rows, cols)
        b = self.bindings[(arg.name, VIEW_KIND[arg.kind])]
        return view(self._buffers[b.buffer], 0, (rows, cols), b.dtype)

    def _operand(self, arg: Arg, offset: int, batch: int, stride: int, rows: int, cols: int) -> Any:
        """A (rows, cols) matrix, or ``batch`` of them ``stride`` elements apart, ``offset`` elements into
        the view or weight ``arg`` names (StridedGemm operands)."""
        from hgc.codegen.plan import ITEMSIZE
        from hgc.runtime.cuda.device import DeviceError, device_dtype

        if arg.kind in ("weight", "wgrad"):
            base, dtype = self._weight_view(arg, arg.kind == "wgrad"), "float32"
        else:
            b = self.bindings[(arg.name, VIEW_KIND[arg.kind])]
            base, dtype = self._buffers[b.buffer], b.dtype
        size = ITEMSIZE[dtype]
        end = offset + (batch - 1) * stride + rows * cols
        if offset < 0 or end * size > base.nbytes:
            raise DeviceError(f"GEMM operand {arg.kind}:{arg.name} needs elements [{offset}, {end}) of a "
                              f"{base.nbytes // size}-element {dtype} view")
        ptr = base.data + offset * size
        if batch == 1:
            return cupy().ndarray((rows, cols), device_dtype(dtype), memptr=ptr)
        return cupy().ndarray((batch, rows, cols), device_dtype(dtype), memptr=ptr,
                              strides=(stride * size, cols * size, size))

    def _strided_gemm(self, op: StridedGemm) -> None:
        at = self.batch
        m, n, k, count = op.m.at(at), op.n.at(at), op.k.at(at), op.batch.at(at)
        if count == 0:
            return
        a = self._operand(op.a, op.offset_a.at(at), count, op.stride_a.at(at),
                          *((k, m) if op.transa else (m, k)))
        b = self._operand(op.b, op.offset_b.at(at), count, op.stride_b.at(at),
                          *((n, k) if op.transb else (k, n)))
        c = self._operand(op.c, op.offset_c.at(at), count, op.stride_c.at(at), m, n)
        if count == 1:
            gemm(a, b, c, op.transa, op.transb, op.alpha, op.beta)
            return
        prod = cupy().matmul(a.swapaxes(1, 2) if op.transa else a, b.swapaxes(1, 2) if op.transb else b)
        if op.alpha != 1.0:
            prod *= op.alpha
        if op.beta == 0.0:
            c[...] = prod
        else:
            if op.beta != 1.0:
                c *= op.beta
            c += prod

    # -- operations ------------------------------------------------------------------------------
    def _run(self, op: Op) -> None:
        if isinstance(op, graph.LossSnapshot):
            self._snapshot_losses()
            return
        prof = profile.active()
        if prof is None or isinstance(op, EmbeddingCall):  # the tables time their own stages
            self._exec(op)
        else:
            with prof.region(*profile.op_cost(self, op, getattr(self, "_node", ""))):
                self._exec(op)
        if debug_level() >= 1 and prof is None:  # profiling times with events instead of synchronising
            sync_check(describe(op))
        if isinstance(op, GemmCall) and op.epilogue is not None:
            self._run(op.epilogue)

    def _exec(self, op: Op) -> None:
        if isinstance(op, KernelLaunch):
            if op.mode == "train" and not self._training or op.mode == "eval" and self._training:
                return
            fn = self.kernels(op.spec, op.function)
            args = tuple(self.resolve(a) for a in op.args)
            fn(op.launch.grid(self.batch), op.launch.block, args, shared_mem=op.launch.smem)
        elif isinstance(op, GemmCall):
            self._gemm(op)
        elif isinstance(op, StridedGemm):
            self._strided_gemm(op)
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
                emb.forward_device(self._device_sparse[op.input], self._training, out.reshape(-1, emb.vec))
                if not self._fused:  # the fast path reads errors with its losses; here they raise at once
                    emb.check()
            elif op.phase == "backward":
                grad = self.tensor(op.output, "gradient").reshape(-1, emb.vec)
                if self._fused:
                    emb.backward_update(grad)
                else:
                    emb.backward(grad)
            elif not self._fused:
                emb.update(self._runtime["lr"], self._runtime.get("scaler", 1.0))
        elif isinstance(op, Collective):
            raise NotBuiltError("multi-GPU collectives on the cuda target", describe(op))

    def _phase(self, steps: Sequence[Any]) -> None:
        for step in steps:
            self._node = step.node
            for op in step.ops:
                self._run(op)

    # -- inputs ----------------------------------------------------------------------------------
    _stager_obj: Stager | None = None
    _landing: dict[str, tuple[Any, Any]] | None = None
    _device_sparse: dict[str, DeviceSparse] | None = None

    def _load_inputs(self, batch: Batch | DeviceBatch) -> None:
        """Put ``batch`` into the input views (labels, dense) and the sparse landing buffers, in order on the
        current stream. A host Batch goes through the pinned double buffers and copy stream of a Stager
        (its copy overlaps whatever the GPU is still computing); a DeviceBatch is copied device to device."""
        inp = self.plan.inputs
        if len(batch.sparse) != len(inp.sparse):
            raise ValueError(f"batch has {len(batch.sparse)} sparse inputs, the Input layer expects "
                             f"{len(inp.sparse)}")
        with profile.region("input: to device", "copy"):
            if isinstance(batch, DeviceBatch):
                db = batch
            else:
                if self._stager_obj is None:
                    self._stager_obj = Stager(depth=2)
                db = self._stager_obj.put(batch)
            self._land(db)
        self.sparse_inputs = {name: sb for (name, _), sb in zip(inp.sparse, batch.sparse)}

    def _keys_per_sample(self, name: str) -> int:
        """The most keys one sample can have in sparse input ``name`` (its slots' nnz_per_slot summed)."""
        try:
            for sp in self.plan.node("data").attrs["sparse"]:
                if sp["name"] == name:
                    return int(sum(sp["nnz_per_slot"]))
        except KeyError:
            pass
        return 0

    def _land(self, db: DeviceBatch) -> None:
        cp = cupy()
        stream = cp.cuda.get_current_stream()
        inp = self.plan.inputs
        db.wait(stream)
        col = 0
        width = int(db.label.shape[1]) if db.label.ndim == 2 else 0
        for name, dim in inp.labels:
            if (name, "activation") in self.bindings and dim:
                dst = self.tensor(name)
                if dim == width == col + dim and col == 0:
                    cp.cuda.runtime.memcpyAsync(dst.data.ptr, db.label.data.ptr, db.n * dim * 4, D2D, stream.ptr)
                else:
                    dst[...] = db.label[:, col:col + dim].reshape(dst.shape)
            col += dim
        if width != col:
            raise ValueError(f"batch has {width} label columns, the Input layer expects {col}")
        if inp.dense and (inp.dense, "activation") in self.bindings and inp.dense_dim:
            d = self.tensor(inp.dense)
            src = db.dense.reshape(d.shape)
            b = self.bindings[(inp.dense, "activation")]
            if b.dtype == "float32":
                cp.cuda.runtime.memcpyAsync(d.data.ptr, src.data.ptr, src.size * 4, D2D, stream.ptr)
            elif b.dtype == "bfloat16":
                blas.round_to_low(src, d, "bfloat16")
            else:
                d[...] = src
        if self._landing is None:
            self._landing = {}
        self._device_sparse = {}
        for (name, slot_num), ds in zip(inp.sparse, db.sparse):
            if ds.slot_num != slot_num or ds.nseg != db.n * slot_num:
                raise ValueError(f"sparse input '{name}': {ds.nseg} rows of {ds.slot_num} slots for a batch of "
                                 f"{db.n}; the Input layer has {slot_num} slots")
            keys, offsets = self._landing.get(name, (None, None))
            if keys is None or keys.shape[0] < max(ds.nkeys, 1) or offsets.shape[0] < ds.nseg + 1:
                # room for the most keys a batch of the allocated size can have: a fixed address
                most = self._alloc_batch * self._keys_per_sample(name)
                keys = cp.empty(max(ds.nkeys, 1, most, 0 if keys is None else keys.shape[0]), cp.int64)
                offsets = cp.empty(max(ds.nseg + 1, self._alloc_batch * slot_num + 1,
                                       0 if offsets is None else offsets.shape[0]), cp.int64)
                self._landing[name] = (keys, offsets)
            if ds.nkeys:
                cp.cuda.runtime.memcpyAsync(keys.data.ptr, ds.keys.data.ptr, ds.nkeys * 8, D2D, stream.ptr)
            cp.cuda.runtime.memcpyAsync(offsets.data.ptr, ds.offsets.data.ptr, (ds.nseg + 1) * 8, D2D, stream.ptr)
            self._device_sparse[name] = DeviceSparse(keys, offsets[:ds.nseg + 1], ds.nseg, ds.slot_num, ds.nkeys)
        db.release(stream)

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
        return StepResult(DeviceLosses(self), DeviceTensors(self), {})

    def backward(self, loss_weights: Mapping[str, float] | None = None, host: bool = True,
                 scaler: float = 1.0) -> tuple[dict[str, list[Any]], dict[str, tuple]]:
        """Gradients of scaler·Σ w·loss: (dense weight grads per node, (rows, row grads) per embedding).
        ``scaler`` is the static loss scale of mixed precision; :meth:`update` divides it out again."""
        if not self._forward_done:
            raise RuntimeError("backward() before forward()")
        for node, _ in self.plan.losses:
            w = 1.0 if loss_weights is None else float(loss_weights.get(node, 1.0))
            self._runtime[f"loss_weight:{node}"] = w * float(scaler)
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

    #: Replay the steady-state step from CUDA graphs (the solver's ``use_cuda_graph``; the trainer sets it).
    use_cuda_graph: bool = False
    #: Eager steps of one shape before its step is captured.
    GRAPH_AFTER = 2
    _fused = False
    _stream_obj: Any = None
    _graphs: dict[Any, Any] | None = None
    _graph_misses: dict[Any, int] | None = None
    _graph_error: str = ""
    _graph_units: tuple[list[Any], tuple[str, ...]] | None = None

    def train_step(self, batch: Batch | DeviceBatch, lr: float, loss_weights: Mapping[str, float] | None = None,
                   scaler: float = 1.0) -> Mapping[str, float]:
        """Forward, backward and update on the device, without host synchronisation: the returned losses
        (and any error a table recorded, e.g. a one-hot key out of range) are read when first accessed.
        The embedding updates run inside their backward. With ``use_cuda_graph`` the step replays from
        CUDA graphs once its shape has been seen ``GRAPH_AFTER`` times."""
        cp = cupy()
        if scaler == 0:
            raise ValueError("train_step(): scaler=0 is not allowed (gradients are divided by it)")
        self._poll_errors()
        if self._stream_obj is None:
            self._stream_obj = cp.cuda.Stream()
        stream = self._stream_obj
        with stream:
            self._ensure(batch.n)
            self._training = True
            self.step += 1
            self._runtime = {f"seed:{n.name}": rng.step_seed(self.seed, n.name, self.step) for n in self.nodes
                             if n.op == "Dropout"}
            for node, _ in self.plan.losses:
                w = 1.0 if loss_weights is None else float(loss_weights.get(node, 1.0))
                self._runtime[f"loss_weight:{node}"] = w * float(scaler)
            self._dense_hyper(lr, scaler)
            self._load_inputs(batch)
            for emb in self.embeddings.values():
                emb.prepare(lr, scaler)
            self._fused = True
            # with graphs on, GEMMs use the capturable cuBLAS path in the eager steps before a capture too
            gemms = graph.capturable_gemms() if self.use_cuda_graph else contextlib.nullcontext()
            try:
                with gemms:
                    g = self._step_graph(stream, batch.n)
                    if g is not None:
                        g.replay(stream)
                    else:
                        self._phase(self.plan.forward)
                        self._snapshot_losses()
                        self._phase(self.plan.backward)
                        self._phase(self.plan.optimizer)
            finally:
                self._fused = False
            self._forward_done = False
            values = self._loss_snap.copy()  # this step's, kept until read
            self._queue_errors(stream)
            return StepLosses({node: values[i:i + 1] for i, (node, _) in enumerate(self.plan.losses)},
                              list(self.embeddings.values()))

    _loss_snap: Any = None
    _err_host: Any = None
    _err_event: Any = None

    def _queue_errors(self, stream: Any) -> None:
        """Copy every table's error words to pinned host memory behind this step (no waiting)."""
        if not self.embeddings:
            return
        cp = cupy()
        if self._err_host is None:
            self._err_host = cp.cuda.alloc_pinned_memory(32 * len(self.embeddings))
            self._err_event = cp.cuda.Event(disable_timing=True)
        for i, emb in enumerate(self.embeddings.values()):
            cp.cuda.runtime.memcpyAsync(self._err_host.ptr + 32 * i, emb.err.data.ptr, 32, D2H, stream.ptr)
        self._err_event.record(stream)

    def _poll_errors(self) -> None:
        """Raise an error a table recorded in an earlier step once that step's error words have arrived on
        the host (never waits: a trainer that does not read the losses still stops within a step or two)."""
        if self._err_event is None or not self._err_event.done:
            return
        words = np.frombuffer(self._err_host, np.uint64, 4 * len(self.embeddings))
        for i, emb in enumerate(self.embeddings.values()):
            if words[4 * i] != NO_BAD or words[4 * i + 3]:
                emb.check()  # synchronises, raises with the details, clears

    def _snapshot_losses(self) -> None:
        """Copy every loss value into a persistent buffer (between forward and backward: the backward may
        reuse the loss buffers)."""
        cp = cupy()
        if self._loss_snap is None:
            self._loss_snap = cp.zeros(max(1, len(self.plan.losses)), cp.float32)
        stream = cp.cuda.get_current_stream()
        for i, (_, out) in enumerate(self.plan.losses):
            src = self.tensor(out)
            if src.dtype == cp.float32:
                cp.cuda.runtime.memcpyAsync(self._loss_snap.data.ptr + 4 * i, src.data.ptr, 4, D2D, stream.ptr)
            else:
                self._loss_snap[i:i + 1] = src.reshape(-1)[:1]

    def _dense_hyper(self, lr: float, scaler: float) -> None:
        """This step's dense optimizer scalars (as :meth:`update` computes them) into the runtime values."""
        opt = self.plan.optimizer_params
        self.dense_steps += 1
        t = self.dense_steps
        alpha = 0.0
        if opt.get("optimizer_type") == "Adam":
            alpha = lr * np.sqrt(1.0 - float(opt["beta2"]) ** t) / (1.0 - float(opt["beta1"]) ** t)
        kind, lam = self.plan.regularizer
        self._runtime.update({"lr": float(lr), "alpha": float(alpha), "inv_scaler": 1.0 / float(scaler),
                              "reg_scale": float(lam) / self.plan.batch if kind != "none" else 0.0,
                              "scaler": float(scaler)})

    def _graphs_usable(self) -> bool:
        """False while debugging or profiling (every operation runs eagerly then) or after a failed capture."""
        return not self._graph_error and debug_level() < 1 and profile.active() is None

    def _graph_key(self, baked: Sequence[str]) -> tuple[Any, ...]:
        """What a captured graph bakes in besides its operations: the allocation, every buffer and landing
        address, and the runtime values the graph's kernels read as constants."""
        return (self._alloc_batch, tuple(id(b) for b in self._buffers.values()),
                tuple((k, v[0].data.ptr, v[1].data.ptr) for k, v in sorted((self._landing or {}).items())),
                tuple((name, self._runtime.get(name)) for name in baked))

    def _cached_graph(self, cache: dict[Any, Any], seen: dict[Any, int], key: Any, units: Sequence[Any],
                      stream: Any, keep: int, what: str,
                      eager: Callable[[Op], bool] | None = None) -> graph.StepGraph | None:
        """The graph of ``units`` cached under ``key``: captured on the GRAPH_AFTER-th time the key is seen
        (None before, and when the capture fails: a warning, and this executor stays eager); at most
        ``keep`` graphs are kept, the oldest dropped first."""
        g = cache.get(key)
        if g is not None:
            return g
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= self.GRAPH_AFTER:
            return None
        g = graph.StepGraph(self, units, key, eager=eager)
        try:
            g.capture(stream)
        except Exception as e:  # noqa: BLE001  (an operation that cannot be captured: stay eager)
            self._graph_error = f"{type(e).__name__}: {e}"
            warnings.warn(f"CUDA graph capture of {what} failed, training continues without graphs: "
                          f"{self._graph_error}", RuntimeWarning, stacklevel=4)
            return None
        if len(cache) >= keep:
            cache.pop(next(iter(cache)))
        cache[key] = g
        return g

    def _step_graph(self, stream: Any, n: int) -> graph.StepGraph | None:
        """The captured step for this shape (capturing it on the GRAPH_AFTER-th eager step), or None to run
        eagerly (graphs off, debugging or profiling, or a shape seen too rarely)."""
        if not self.use_cuda_graph or not self._graphs_usable():
            return None
        if self._graph_units is None:
            units = graph.step_units(self.plan)
            self._graph_units = (units, graph.baked([op for _, op in units]))
        units, baked = self._graph_units
        key = (n, tuple(id(e._ws) for e in self.embeddings.values()), *self._graph_key(baked))
        if self._graphs is None:
            self._graphs, self._graph_misses = {}, {}
        assert self._graph_misses is not None
        # keep the steady shape and one other (a short last batch)
        return self._cached_graph(self._graphs, self._graph_misses, key, units, stream, 2, "the training step")

    def state_of(self, node: str) -> dict[str, np.ndarray]:
        """Host copies of a node's persistent state (BatchNorm: mean, var)."""
        cp = cupy()
        prefix = f"{node}/"
        return {k[len(prefix):]: cp.asnumpy(v) for k, v in self.states.items() if k.startswith(prefix)}

    def set_state(self, node: str, values: Mapping[str, np.ndarray]) -> None:
        """Set a node's persistent state from host arrays (BatchNorm: {"mean": …, "var": …})."""
        for key, value in values.items():
            name = f"{node}/{key}"
            if name not in self.states:
                raise KeyError(f"node '{node}' has no device state '{key}'; it has "
                               f"{sorted(self.state_of(node))}")
            arr = np.ascontiguousarray(value, np.float32).reshape(-1)
            if arr.size != self.states[name].size:
                raise ValueError(f"state '{key}' of node '{node}' has {self.states[name].size} values, "
                                 f"{arr.size} were given")
            self.states[name].set(arr)

    DENSE_STATES = ("optimizer/s0", "optimizer/s1")

    def dense_states(self) -> list[dict[str, list[np.ndarray]]]:
        """Host copies of the dense optimizer states, one per state kind in the cpu optimizer's order (Adam:
        m, v; Ftrl: n, z; momentum / accumulator), each per node as :meth:`get_weights`."""
        cp = cupy()
        out: list[dict[str, list[np.ndarray]]] = []
        for name in self.DENSE_STATES:
            if name not in self.states:
                break
            host = cp.asnumpy(self.states[name])
            kind: dict[str, list[np.ndarray]] = {}
            for w in self.plan.weights:
                kind.setdefault(w.node, []).append(host[w.offset:w.offset + w.size].reshape(w.shape).copy())
            out.append(kind)
        return out

    def set_dense_states(self, states: Sequence[Mapping[str, Sequence[np.ndarray]]]) -> None:
        """Replace the dense optimizer states (layout of :meth:`dense_states`)."""
        names = [n for n in self.DENSE_STATES if n in self.states]
        if len(states) != len(names):
            raise ValueError(f"{len(states)} dense optimizer state kind(s) given, the "
                             f"{self.plan.optimizer_params.get('optimizer_type')} optimizer keeps {len(names)}")
        for name, by_node in zip(names, states):
            host = cupy().asnumpy(self.states[name])
            for w in self.plan.weights:
                arr = np.asarray(by_node[w.node][w.index], np.float32)
                if arr.size != w.size:
                    raise ValueError(f"optimizer state of weight {w.index} of '{w.node}' has {arr.size} values, "
                                     f"the plan expects shape {w.shape}")
                host[w.offset:w.offset + w.size] = arr.reshape(-1)
            self.states[name].set(host)
