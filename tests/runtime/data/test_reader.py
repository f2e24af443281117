import enum
import threading

import numpy as np
import pytest

from hgc.errors import DataError
from hgc.runtime.data.layout import format_name
from hgc.runtime.data.reader import DataReader, DataReader32, DataReader64
from tests.runtime.data import spec


class Fmt(enum.Enum):
    Norm = 0
    RawAsync = 3


class Chk(enum.Enum):
    Sum = 0
    Non = 1


def _dataset(tmp_path, counts, seed=0, checksum=True):
    rng = np.random.default_rng(seed)
    tmp_path = tmp_path / f"s{seed}"
    tmp_path.mkdir(exist_ok=True)
    files, per_file = [], []
    for k, n in enumerate(counts):
        samples = spec.random_samples(rng, n, 1, 2, [3, 1], key_hi=5000)
        p = tmp_path / f"f{k}.data"
        p.write_bytes(spec.norm_file(samples, 1, 2, 2, False, checksum))
        files.append(str(p))
        per_file.append(samples)
    lst = str(tmp_path / f"list{seed}.txt")
    spec.write_file_list(lst, files)
    return lst, per_file


def _reader(lst, B, **kw):
    kw.setdefault("label_dims", 1)
    kw.setdefault("dense_dim", 2)
    kw.setdefault("sparse", [(2, [3, 1], False)])
    return DataReader(Fmt.Norm, lst, B, **kw)


def _hugectr_order(per_file, B, W, batches):
    """Expected epoch-mode batches: worker w fills batches from files w, w+W, ...; batches are taken from the
    workers in turn (a worker's last batch may be short)."""
    queues = []
    for w in range(W):
        rows = [s for k in range(w, len(per_file), W) for s in per_file[k]]
        queues.append([rows[i : i + B] for i in range(0, len(rows), B)])
    out, turn = [], 0
    while any(queues):
        if queues[turn % W]:
            out.append(queues[turn % W].pop(0))
        turn += 1
    return out[:batches] if batches else out


@pytest.mark.parametrize("W", [1, 2, 3, 5])
def test_epoch_mode_follows_hugectr_worker_scheduling(tmp_path, W):
    lst, per_file = _dataset(tmp_path, [11, 7, 4, 9], seed=W)
    r = _reader(lst, 4, repeat=False, num_workers=W, check_type=Chk.Sum)
    batches = list(r)
    want = _hugectr_order(per_file, 4, W, None)
    assert [b.size for b in batches] == [len(x) for x in want]
    for b, w in zip(batches, want):
        assert b.n == 4
        spec.check_padding(b)
        spec.assert_same_samples(spec.batches_to_samples([b], [2], 1), w)
    assert r.is_eof() and r.read() is None
    with pytest.raises(StopIteration):
        next(r)


def test_repeat_mode_wraps_around(tmp_path):
    lst, per_file = _dataset(tmp_path, [5, 3])
    r = _reader(lst, 3, repeat=True, num_workers=1)
    rows = [s for f in per_file for s in f]
    got = spec.batches_to_samples([r.read() for _ in range(8)], [2], 1)
    spec.assert_same_samples(got, (rows * 3)[:24])
    assert not r.is_eof()
    r.close()


def test_set_source_and_is_eof(tmp_path):
    lst_a, _a = _dataset(tmp_path, [6], seed=1)
    lst_b, b = _dataset(tmp_path, [4, 4], seed=2)
    r = _reader(lst_a, 4, repeat=False, num_workers=2)
    assert not r.is_eof()
    assert [x.size for x in r] == [4, 2] and r.is_eof()
    r.set_source()
    assert not r.is_eof() and sum(x.size for x in r) == 6
    r.set_source(lst_b)
    got = spec.batches_to_samples(list(r), [2], 1)
    spec.assert_same_samples(got, b[0] + b[1])
    assert r.source == lst_b and r.is_eof()


def test_cache_eval_data_replays_first_batches(tmp_path):
    lst, _per_file = _dataset(tmp_path, [10])
    r = _reader(lst, 3, repeat=True, num_workers=1, cache_eval_data=2)
    first = [r.read() for _ in range(2)]
    assert not r._threads  # file reading stopped once the cache is full
    again = [r.read() for _ in range(4)]
    assert again[0] is first[0] and again[1] is first[1] and again[2] is first[0]
    e = _reader(lst, 3, repeat=False, num_workers=1, cache_eval_data=10)
    assert [x.size for x in e] == [3, 3, 3, 1]
    e.set_source()
    assert [x.size for x in e] == [3, 3, 3, 1]


def test_empty_source_in_repeat_mode_raises_instead_of_hanging(tmp_path):
    p = tmp_path / "e.data"
    p.write_bytes(spec.norm_header(0, 1, 2, 2, True))
    spec.write_file_list(str(tmp_path / "l.txt"), [str(p)])
    r = _reader(str(tmp_path / "l.txt"), 4, repeat=True, num_workers=2)
    done = threading.Event()
    errors = []

    def run():
        try:
            r.read()
        except DataError as e:
            errors.append(e)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(20), "the reader hung on an empty source"
    assert errors and "no samples" in errors[0].rule
    e = _reader(str(tmp_path / "l.txt"), 4, repeat=False)
    assert e.read() is None and e.is_eof()


def test_argument_validation(tmp_path):
    lst, _ = _dataset(tmp_path, [3])
    with pytest.raises(ValueError, match="batch_size=0"):
        _reader(lst, 0)
    with pytest.raises(ValueError, match="num_workers=0"):
        _reader(lst, 2, num_workers=0)
    with pytest.raises(ValueError, match="check_type='Crc'"):
        _reader(lst, 2, check_type="Crc")
    with pytest.raises(ValueError, match="data_reader_type='Csv'"):
        DataReader("Csv", lst, 2, sparse=[(1, 1, False)])
    assert format_name(Fmt.RawAsync) == "Raw"
    with pytest.raises(ValueError, match="slot_size_array has 3 entries"):
        _reader(lst, 2, slot_size_array=[1, 2, 3])
    with pytest.raises(ValueError, match="nnz_per_slot"):
        _reader(lst, 2, sparse=[(2, [1], False)])
    with pytest.raises(ValueError, match="several sources"):
        _reader([lst, lst], 2)
    with pytest.raises(DataError, match="slot_num=2 does not match"):
        list(_reader(lst, 2, sparse=[(3, 1, False)], repeat=False))


def test_reader32_64_and_context_manager(tmp_path):
    lst, _ = _dataset(tmp_path, [5])
    with DataReader32(
        "Norm", lst, 2, label_dims=1, dense_dim=2, sparse=[(2, [3, 1], False)], repeat=False
    ) as r:
        assert r.read().sparse[0].keys.dtype == np.uint32
    rng = np.random.default_rng(0)
    samples = spec.random_samples(rng, 4, 1, 2, [3, 1], i64=True)
    (tmp_path / "w.data").write_bytes(spec.norm_file(samples, 1, 2, 2, True, True))
    spec.write_file_list(str(tmp_path / "w.txt"), [str(tmp_path / "w.data")])
    r64 = DataReader64(
        "Norm",
        str(tmp_path / "w.txt"),
        4,
        label_dims=1,
        dense_dim=2,
        sparse=[{"slot_num": 2, "nnz_per_slot": [3, 1], "is_fixed_length": False}],
        repeat=False,
    )
    b = r64.read()
    assert b.sparse[0].keys.dtype == np.int64
    spec.assert_same_samples(spec.batches_to_samples([b], [2], 1), samples)


def test_many_workers_do_not_leak_threads(tmp_path):
    lst, _ = _dataset(tmp_path, [40, 40, 40])
    before = threading.active_count()
    for _ in range(3):
        r = _reader(lst, 8, repeat=True, num_workers=6, prefetch=1)
        for _ in range(5):
            r.read()
        r.close()
    assert threading.active_count() <= before + 1


def test_the_pin_hook_runs_in_the_workers_on_every_batch(tmp_path):
    """The cuda target's hook (pinned_batch) moves batches to page-locked memory in the worker threads: every
    batch passes through it there, and what it returns is what read() gives; a failing hook surfaces in read()."""
    lst, per_file = _dataset(tmp_path, [11, 7, 4, 9], seed=7)
    main = threading.get_ident()
    seen = []

    def pin(b):
        assert threading.get_ident() != main
        seen.append(b)
        return type(b)(b.size, b.label.copy(), b.dense.copy(), b.sparse)

    r = _reader(lst, 4, repeat=False, num_workers=2, pin=pin)
    batches, want = list(r), _hugectr_order(per_file, 4, 2, None)
    assert len(seen) == len(batches) == len(want) and not any(b is s for b in batches for s in seen)
    spec.assert_same_samples(spec.batches_to_samples(batches, [2], 1), [x for w in want for x in w])

    def broken(b):
        raise MemoryError("page-locked memory exhausted")

    with pytest.raises(MemoryError, match="page-locked"):
        _reader(lst, 4, repeat=False, num_workers=2, pin=broken).read()
