"""The low-level API objects check their arguments and hand them to the runtime's objects unchanged."""
import pytest

import hgc
from hgc.frontend.low_level import CompileOnlyRuntime, TrainingRuntime


class Recorder:
    """A runtime-side object that records what the frontend object passes on."""

    def __init__(self):
        self.calls = []

    def set_source(self, file_name):
        self.calls.append(("set_source", file_name))

    def is_eof(self):
        return 1

    def update(self, keyset_files):
        self.calls.append(("update", keyset_files))

    def get_next(self):
        return 0.25


def test_data_reader_delegates_and_checks(tmp_path):
    backend = Recorder()
    r = hgc.DataReader64(backend)
    lst = tmp_path / "file_list.1.txt"
    lst.write_text("1\nx.data\n")
    r.set_source(str(lst))
    r.set_source()
    r.set_file_list_source(str(lst))
    assert backend.calls == [("set_source", str(lst)), ("set_source", ""), ("set_source", str(lst))]
    assert r.is_eof() is True and r.key_type == "int64" and hgc.DataReader32(backend).key_type == "uint32"
    with pytest.raises(ValueError, match=r"DataReader64.set_source\(\): argument 'file_name' = .* no such file"):
        r.set_source(str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="'file_name' = 3 .* string"):
        r.set_source(3)


def test_embedding_training_cache_update(tmp_path):
    backend = Recorder()
    etc = hgc.EmbeddingTraingCache(backend)
    k1, k2 = tmp_path / "a.keyset", tmp_path / "b.keyset"
    k1.write_bytes(b"")
    k2.write_bytes(b"")
    etc.update(str(k1))
    etc.update([str(k1), str(k2)])
    assert backend.calls == [("update", [str(k1)]), ("update", [str(k1), str(k2)])]
    with pytest.raises(ValueError, match=r"EmbeddingTrainingCache.update\(\): argument 'keyset_file' = \[\]"):
        etc.update([])
    with pytest.raises(ValueError, match="no such file"):
        etc.update(str(tmp_path / "c.keyset"))
    assert isinstance(hgc.ModelPrefetcher(backend), hgc.EmbeddingTrainingCache)


def test_learning_rate_scheduler_delegates():
    assert hgc.LearningRateScheduler(Recorder()).get_next() == 0.25


def test_compile_only_runtime_covers_the_runtime_interface():
    rt = CompileOnlyRuntime(0.5)
    methods = [n for n, v in vars(TrainingRuntime).items() if callable(v) and not n.startswith("_")]
    assert len(methods) > 25
    for name in methods:
        assert callable(getattr(rt, name))
    assert rt.train() is False and rt.learning_rate_scheduler().get_next() == 0.5
    assert rt.data_reader("eval").is_eof() is True and rt.get_incremental_model() == []
    assert rt.load_sparse_weights({"e": "x"}, None) is None
    with pytest.raises(AttributeError):
        rt.not_a_runtime_method()
