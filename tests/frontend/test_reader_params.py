import pytest

import hgc
from hgc.frontend.reader_params import check_reader_for_model


def norm(**kw):
    args = {"data_reader_type": hgc.DataReaderType_t.Norm, "source": ["./wdl_norm/file_list.txt"],
            "eval_source": "./wdl_norm/file_list_test.txt", "check_type": hgc.Check_t.Sum}
    return hgc.DataReaderParams(**{**args, **kw})


def test_defaults():
    r = norm()
    assert r.source == ["./wdl_norm/file_list.txt"] and r.keyset == []
    assert (r.cache_eval_data, r.num_samples, r.eval_num_samples) == (0, 0, 0)
    assert r.float_label_dense is False  # the binding default (facts §4.1)
    assert (r.read_file_sequentially, r.num_workers, r.slot_size_array) == (False, 12, [])
    assert r.data_source_params is None
    a = r.async_param
    assert (a.num_threads, a.num_batches_per_thread, a.io_block_size, a.io_depth, a.io_alignment, a.shuffle,
            a.aligned_type) == (16, 4, 512000, 4, 512, False, hgc.Alignment_t.Non)


def test_source_string_or_list_and_keysets():
    assert norm(source="file_list.txt").source == ["file_list.txt"]
    r = norm(source=["file_list.1.txt", "file_list.2.txt"], keyset=["file_list.1.keyset", "file_list.2.keyset"])
    assert len(r.keyset) == 2
    with pytest.raises(ValueError, match="'keyset' .* one keyset file per source"):
        norm(source=["a", "b"], keyset=["k"])


def test_parquet_seed_example():
    r = hgc.DataReaderParams(data_reader_type=hgc.DataReaderType_t.Parquet,
                             source=["./parquet_data/train/_file_list.txt"],
                             eval_source="./parquet_data/val/_file_list.txt", check_type=hgc.Check_t.Non,
                             slot_size_array=[10000, 50000, 20000, 300])
    assert r.slot_size_array == [10000, 50000, 20000, 300]


def test_data_source_params():
    dsp = hgc.data.DataSourceParams()
    assert norm(data_source_params=dsp).data_source_params is dsp
    with pytest.raises(TypeError, match="data_source_params"):
        norm(data_source_params={"use_hdfs": False})


@pytest.mark.parametrize("kwargs, arg, rule", [
    ({"data_reader_type": "CSV"}, "data_reader_type", "DataReaderType_t.Norm"),
    ({"check_type": "crc"}, "check_type", "Check_t.Sum"),
    ({"source": []}, "source", "at least one"),
    ({"source": 7}, "source", "string or a list"),
    ({"eval_source": ""}, "eval_source", "non-empty"),
    ({"num_workers": 0}, "num_workers", ">= 1"),
    ({"num_samples": -1}, "num_samples", ">= 0"),
    ({"slot_size_array": [10, 0]}, "slot_size_array", ">= 1"),
    ({"float_label_dense": None}, "float_label_dense", "True or False"),
])
def test_rejects(kwargs, arg, rule):
    with pytest.raises(ValueError, match=rf"DataReaderParams\(\): argument '{arg}' = .* is not allowed: .*{rule}"):
        norm(**kwargs)


def test_required_and_unknown():
    with pytest.raises(TypeError, match="missing required argument 'eval_source'"):
        hgc.DataReaderParams(data_reader_type=hgc.DataReaderType_t.Norm, source="a", check_type=hgc.Check_t.Sum)
    with pytest.raises(TypeError, match="'batch_size'"):
        norm(batch_size=3)


def test_model_level_rules():
    solver = hgc.CreateSolver()
    raw = {"data_reader_type": hgc.DataReaderType_t.Raw, "source": "train.bin", "eval_source": "val.bin",
           "check_type": hgc.Check_t.Non}
    with pytest.raises(ValueError, match="'reader_params.num_samples' = 0 .* sample count"):
        check_reader_for_model(hgc.DataReaderParams(**raw), solver, None)
    with pytest.raises(ValueError, match="'reader_params.eval_num_samples' = 0"):
        check_reader_for_model(hgc.DataReaderParams(**raw, num_samples=10), solver, None)
    ok = hgc.DataReaderParams(**raw, num_samples=10, eval_num_samples=5)
    check_reader_for_model(ok, solver, None)
    with pytest.raises(ValueError, match="'solver.i64_input_key' = True .* 32-bit keys"):
        check_reader_for_model(ok, hgc.CreateSolver(i64_input_key=True), None)
    rawasync = hgc.DataReaderParams(data_reader_type=hgc.DataReaderType_t.RawAsync, source="a", eval_source="b",
                                    check_type=hgc.Check_t.Non)
    with pytest.raises(ValueError, match="is_dlrm=True"):
        check_reader_for_model(rawasync, solver, None)
    check_reader_for_model(rawasync, hgc.CreateSolver(is_dlrm=True), None)
    several = norm(source=["a.txt", "b.txt"])
    with pytest.raises(ValueError, match="embedding training cache"):
        check_reader_for_model(several, solver, None)
    etc = hgc.CreateETC([hgc.TrainPSType_t.Staged], ["t0"])
    check_reader_for_model(several, solver, etc)


def test_sparse_param():
    p = hgc.DataReaderSparseParam("deep_data", 2, False, 26)
    assert p.nnz_list() == [2] * 26 and p.top_name == "deep_data"
    q = hgc.DataReaderSparseParam(sparse_name="wide", nnz_per_slot=[1, 3, 2], is_fixed_length=True, slot_num=3)
    assert q.nnz_list() == [1, 3, 2]
    assert hgc.DataReaderSparseParam(top_name="x", nnz_per_slot=1, is_fixed_length=True, slot_num=1).sparse_name == "x"
    with pytest.raises(ValueError, match="'nnz_per_slot' = \\[1, 2\\] .* one entry per slot \\(slot_num = 3\\)"):
        hgc.DataReaderSparseParam("s", [1, 2], False, 3)
    with pytest.raises(ValueError, match="'slot_num' = 0"):
        hgc.DataReaderSparseParam("s", 1, False, 0)
    with pytest.raises(ValueError, match="'nnz_per_slot' = 0"):
        hgc.DataReaderSparseParam("s", 0, False, 2)
    with pytest.raises(ValueError, match="'is_fixed_length' = 1"):
        hgc.DataReaderSparseParam("s", 1, 1, 2)
    with pytest.raises(TypeError, match="'max_nnz'"):
        hgc.DataReaderSparseParam("s", 1, False, 2, max_nnz=3)
