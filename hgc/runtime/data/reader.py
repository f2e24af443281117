"""The data reader: worker threads decode files into batches, the consumer collects them in order.

Scheduling follows HugeCTR. For Norm and Parquet, worker w of W reads files w, w+W, w+2W, … of the file list
(modulo the list length when repeating) and fills whole batches from its own files; for Raw, worker w reads
the contiguous sample blocks w, w+W, … of the file. The consumer takes batches from workers 0, 1, …, W-1 in
turn. Each worker has a bounded queue (``prefetch`` batches), so memory stays bounded.

Epoch mode (``repeat=False``) stops at the end of the source: a worker's last batch may be short, and is
padded to ``batch_size`` rows (zero label/dense, no keys; ``Batch.size`` counts the real rows). Non-epoch
mode (``repeat=True``) wraps around forever. An error in a worker is raised in the consumer, at the point
where that worker's batch would have been; the reader never hangs on bad input.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from hgc.errors import DataError
from hgc.runtime.data.assemble import BatchAssembler
from hgc.runtime.data.batch import Batch
from hgc.runtime.data.filelist import read_file_list
from hgc.runtime.data.layout import Block, Layout, check_type_name, format_name
from hgc.runtime.data.norm import DecodeScratch, NormDecoder
from hgc.runtime.data.parquet import ParquetDecoder, load_metadata, metadata_path_for
from hgc.runtime.data.raw import RawFile

_END = object()
_POLL_S = 0.05


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _FileSource:
    """Norm or Parquet: units are the files of a file list."""

    flush_each_unit = False

    def __init__(self, name: str, files: list[str], decode: Any) -> None:
        self.name = name
        self.files = files
        self._decode = decode

    def num_units(self) -> int:
        return len(self.files)

    def blocks(self, unit: int, scratch: Any = None) -> Iterator[Block]:
        if scratch is not None:
            return self._decode.blocks(self.files[unit], scratch)
        return self._decode.blocks(self.files[unit])

    def scratch(self) -> Any:
        """Reusable decode buffers for one worker (Norm), or None."""
        return DecodeScratch() if isinstance(self._decode, NormDecoder) else None

    def close(self) -> None:
        pass


class _RawSource:
    """Raw: units are the contiguous batch-sized sample blocks of one file."""

    flush_each_unit = True

    def __init__(self, raw: RawFile, batch_size: int) -> None:
        self.name = raw.path
        self.raw = raw
        self.batch_size = batch_size

    def num_units(self) -> int:
        return -(-self.raw.num_samples // self.batch_size)

    def scratch(self) -> Any:
        return None

    def blocks(self, unit: int, scratch: Any = None) -> Iterator[Block]:
        a = unit * self.batch_size
        b = min(a + self.batch_size, self.raw.num_samples)
        yield self.raw.block(a, b)

    def close(self) -> None:
        self.raw.close()


class DataReader:
    """Reads Norm, Raw or Parquet data into :class:`~hgc.runtime.data.batch.Batch` objects.

    Arguments (explicit; the runtime maps ``DataReaderParams`` and ``Input`` onto them):

    * ``data_format``: ``DataReaderType_t`` member or name ("Norm", "Raw", "Parquet").
    * ``source``: file list (Norm, Parquet) or the ``.bin`` file (Raw).
    * ``batch_size``: rows per batch (the global batch).
    * ``label_dims`` (int or list), ``dense_dim``, ``sparse``: the ``Input`` layout; each sparse input is a
      SparseSpec, a ``(slot_num, nnz_per_slot, is_fixed_length)`` tuple or a ``DataReaderSparseParam``.
    * ``key_dtype``: "uint32" (I32) or "int64" (I64); ``check_type``: ``Check_t`` member or name (Norm).
    * ``num_samples``, ``float_label_dense``: Raw only (0 = the whole file).
    * ``slot_size_array``: Parquet slot offsets; for every format also the key range that is checked.
    * ``repeat``: True = non-epoch mode (wrap around), False = epoch mode (stop at the end).
    * ``num_workers``: worker threads (Parquet: at most the number of files); ``prefetch``: batches queued
      per worker.
    * ``cache_eval_data``: if > 0, keep the first that many batches and, once they are read, serve them again
      on every later pass instead of reading the files (evaluation caching).
    * ``chunk_samples``: Norm samples decoded per call (bounds each worker's buffers).
    * ``pin``: applied by the worker threads to every batch before it is queued (the cuda target moves
      batches into page-locked memory there, off the training thread); None keeps them as built.

    ``read()`` (or iteration) returns batches of exactly ``batch_size`` rows; in epoch mode ``None`` (or
    StopIteration) at the end, after which ``is_eof()`` is True until ``set_source()``.
    """

    def __init__(
        self,
        data_format: Any,
        source: str | os.PathLike[str] | Sequence[str],
        batch_size: int,
        *,
        label_dims: int | Sequence[int] = (1,),
        dense_dim: int = 0,
        sparse: Sequence[Any] = (),
        key_dtype: Any = "uint32",
        check_type: Any = "Sum",
        num_samples: int = 0,
        float_label_dense: bool = False,
        slot_size_array: Sequence[int] = (),
        repeat: bool = True,
        num_workers: int = 12,
        prefetch: int = 2,
        cache_eval_data: int = 0,
        chunk_samples: int = 16384,
        pin: Callable[[Batch], Batch] | None = None,
    ) -> None:
        self.format = format_name(data_format)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}: must be an integer >= 1")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            raise ValueError(f"num_workers={num_workers!r}: must be an integer >= 1")
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
            raise ValueError(f"prefetch={prefetch!r}: must be an integer >= 1")
        if isinstance(cache_eval_data, bool) or not isinstance(cache_eval_data, int) or cache_eval_data < 0:
            raise ValueError(f"cache_eval_data={cache_eval_data!r}: must be an integer >= 0")
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 0:
            raise ValueError(f"num_samples={num_samples!r}: must be an integer >= 0")
        self.layout = Layout.make(label_dims, dense_dim, sparse, key_dtype, slot_size_array)
        if self.layout.slot_num == 0 and self.format != "Raw":
            raise ValueError("sparse=(): a model input needs at least one sparse input")
        if (
            self.format != "Parquet"
            and self.layout.slot_size_array
            and len(self.layout.slot_size_array) != self.layout.slot_num
        ):
            raise ValueError(
                f"slot_size_array has {len(self.layout.slot_size_array)} entries but the sparse inputs "
                f"have {self.layout.slot_num} slots"
            )
        self.check_type = check_type_name(check_type)
        self.batch_size = batch_size
        self.num_samples = num_samples
        self.float_label_dense = bool(float_label_dense)
        self.repeat = bool(repeat)
        self.num_workers = num_workers
        self.prefetch = prefetch
        self.cache_eval_data = cache_eval_data
        self.chunk_samples = int(chunk_samples)
        self.pin = pin
        self._source_arg = self._source_name(source)
        self._source = self._open(self._source_arg, first=True)
        self._threads: list[threading.Thread] = []
        self._queues: list[queue.Queue] = []
        self._stop = threading.Event()
        self._alive: list[bool] = []
        self._turn = 0
        self._eof = False
        self._broken: BaseException | None = None
        self._cache: list[Batch] = []
        self._cache_done = False
        self._cache_pos = 0

    # ------------------------------------------------------------------ sources
    @staticmethod
    def _source_name(source: Any) -> str:
        if isinstance(source, (list, tuple)):
            if len(source) != 1:
                raise ValueError(
                    f"source={source!r}: the reader takes one file list (several sources are only "
                    "used with the embedding training cache)"
                )
            source = source[0]
        return os.fspath(source)

    def _open(self, source: str, first: bool = False) -> _FileSource | _RawSource:
        lay = self.layout
        if self.format == "Raw":
            n = self.num_samples if first else 0
            return _RawSource(RawFile(source, lay, n, self.float_label_dense), self.batch_size)
        files = read_file_list(source)
        if self.format == "Norm":
            return _FileSource(source, files, NormDecoder(lay, self.check_type == "Sum", self.chunk_samples))
        meta = load_metadata(metadata_path_for(files[0]))
        return _FileSource(source, files, ParquetDecoder(lay, meta))

    def _workers(self) -> int:
        if self.format == "Parquet":
            return max(1, min(self.num_workers, self._source.num_units()))
        return self.num_workers

    # ------------------------------------------------------------------ threads
    def start(self) -> None:
        """Start the worker threads (reading starts by itself on the first batch)."""
        if self._threads or self._eof or self._broken is not None:
            return
        W = self._workers()
        self._stop = threading.Event()
        self._queues = [queue.Queue(maxsize=self.prefetch) for _ in range(W)]
        self._alive = [True] * W
        self._turn = 0
        self._threads = []
        for w in range(W):
            t = threading.Thread(
                target=self._work,
                args=(w, W, self._queues[w], self._stop, self._source),
                name=f"hgc-reader-{w}",
                daemon=True,
            )
            self._threads.append(t)
            t.start()

    def _units(self, w: int, W: int, n_units: int) -> Iterator[int]:
        if n_units == 0:
            return
        if not self.repeat:
            yield from range(w, n_units, W)
            return
        k = 0
        while True:
            yield (w + k * W) % n_units
            k += 1

    def _work(self, w: int, W: int, q: queue.Queue, stop: threading.Event, source: Any) -> None:
        def put(item: object) -> bool:
            if self.pin is not None and isinstance(item, Batch):
                item = self.pin(item)
            while not stop.is_set():
                try:
                    q.put(item, timeout=_POLL_S)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            scratch = source.scratch()
            asm = BatchAssembler(self.layout, self.batch_size, transient=scratch is not None)
            n_units = source.num_units()
            if self.repeat and n_units == 0:
                raise DataError(
                    source.name,
                    "the data source holds no samples; non-epoch mode (repeat) would never produce a batch",
                )
            cycle_rows, cycle_units = 0, 0
            for unit in self._units(w, W, n_units):
                for block in source.blocks(unit, scratch):
                    cycle_rows += block.m
                    for batch in asm.add(block):
                        if not put(batch):
                            return
                    if stop.is_set():
                        return
                if source.flush_each_unit:
                    batch = asm.flush()
                    if batch is not None and not put(batch):
                        return
                cycle_units += 1
                if self.repeat and cycle_units >= n_units:
                    if cycle_rows == 0:
                        raise DataError(
                            source.name,
                            f"the files read by worker {w} of {W} hold no samples; "
                            "non-epoch mode (repeat) would never produce a batch",
                        )
                    cycle_rows, cycle_units = 0, 0
                if stop.is_set():
                    return
            batch = asm.flush()
            if batch is not None and not put(batch):
                return
            put(_END)
        except BaseException as e:  # any failure goes to the consumer, which re-raises it
            put(_Failure(e))

    def _stop_threads(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5.0)
        self._threads = []
        self._queues = []
        self._alive = []

    # ------------------------------------------------------------------ consumer
    def _next_from_workers(self) -> Batch | None:
        if not self._threads:
            self.start()
        W = len(self._queues)
        while any(self._alive):
            w = self._turn
            if not self._alive[w]:
                self._turn = (w + 1) % W
                continue
            item = self._get(w)
            if item is _END:
                self._alive[w] = False
                self._turn = (w + 1) % W
                continue
            if isinstance(item, _Failure):
                self._broken = item.exc
                self._stop_threads()
                raise item.exc
            self._turn = (w + 1) % W
            return item
        self._stop_threads()
        return None

    def _get(self, w: int) -> object:
        q = self._queues[w]
        t = self._threads[w]
        while True:
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                if not t.is_alive() and q.empty():
                    return _Failure(RuntimeError(f"data reader worker {w} stopped without a result"))

    def read(self) -> Batch | None:
        """The next batch, or None at the end of the source in epoch mode."""
        if self._broken is not None:
            raise self._broken
        if self._eof:
            return None
        if self.cache_eval_data and self._cache_done:
            if self._cache_pos < len(self._cache):
                b = self._cache[self._cache_pos]
                self._cache_pos += 1
                return b
            if self.repeat and self._cache:
                self._cache_pos = 1
                return self._cache[0]
            self._eof = True
            return None
        batch = self._next_from_workers()
        if batch is None:
            if self.cache_eval_data:
                self._cache_done = True
                self._cache_pos = len(self._cache)
                if self.repeat and self._cache:
                    return self.read()
            self._eof = True
            return None
        if self.cache_eval_data:
            self._cache.append(batch)
            if len(self._cache) >= self.cache_eval_data:
                self._cache_done = True
                self._cache_pos = len(self._cache)
                self._stop_threads()
        return batch

    def __iter__(self) -> DataReader:
        return self

    def __next__(self) -> Batch:
        batch = self.read()
        if batch is None:
            raise StopIteration
        return batch

    def is_eof(self) -> bool:
        """Whether the reader has reached the end of its current source (epoch mode)."""
        return self._eof

    def set_source(self, file_name: str = "") -> None:
        """Switch to another source (a file list, or a ``.bin`` file for Raw) and start at its beginning;
        ``""`` restarts the current source. With ``cache_eval_data`` the cached batches are served again
        (and dropped when the source changes)."""
        self._stop_threads()
        self._broken = None
        self._eof = False
        if file_name:
            new = self._open(os.fspath(file_name))
            self._source.close()
            self._source = new
            self._source_arg = os.fspath(file_name)
            self._cache, self._cache_done, self._cache_pos = [], False, 0
        elif self.cache_eval_data and self._cache_done:
            self._cache_pos = 0
        else:
            self._cache, self._cache_done, self._cache_pos = [], False, 0

    @property
    def source(self) -> str:
        return self._source_arg

    def close(self) -> None:
        """Stop the workers and release the source."""
        self._stop_threads()
        self._source.close()

    def __enter__(self) -> DataReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._stop.set()
        except AttributeError:
            pass


class DataReader32(DataReader):
    """A data reader with 32-bit keys (``i64_input_key=False``)."""

    def __init__(self, data_format: Any, source: Any, batch_size: int, **kw: Any) -> None:
        kw.setdefault("key_dtype", "uint32")
        super().__init__(data_format, source, batch_size, **kw)


class DataReader64(DataReader):
    """A data reader with 64-bit keys (``i64_input_key=True``)."""

    def __init__(self, data_format: Any, source: Any, batch_size: int, **kw: Any) -> None:
        kw.setdefault("key_dtype", "int64")
        super().__init__(data_format, source, batch_size, **kw)
