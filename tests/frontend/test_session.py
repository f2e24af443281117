from pathlib import Path

import pytest

import hgc
from hgc.config import config
from hgc.frontend import model as model_module

CONFIG = str(Path(__file__).resolve().parents[1] / "ir" / "fixtures" / "wdl_2.3.json")


def test_solver_parser_helper_defaults():
    s = hgc.solver_parser_helper()
    assert (s.seed, s.max_eval_batches, s.batchsize_eval, s.batchsize) == (0, 100, 16384, 16384)
    assert (s.model_file, s.embedding_files, s.vvgpu) == ("", [], [[0]])
    assert (s.use_mixed_precision, s.enable_tf32_compute, s.scaler, s.i64_input_key) == (False, False, 1.0, False)
    assert (s.use_algorithm_search, s.use_cuda_graph, s.repeat_dataset) == (True, True, False)
    assert isinstance(s, hgc.SolverParser) and s.metrics_spec == {hgc.MetricsType.AUC: 1.0}


def test_solver_parser_helper_rules():
    s = hgc.solver_parser_helper(batchsize=40960, batchsize_eval=40960, lr_policy=hgc.LrPolicy_t.fixed,
                                 vvgpu=[[0], [1]], metrics_spec={hgc.MetricsType.AUC: 0.8025})
    assert s.world_size == 2
    with pytest.raises(ValueError, match="'batchsize' = 3 .* divisible by the total GPU count 2"):
        hgc.solver_parser_helper(batchsize=3, vvgpu=[[0, 1]])
    with pytest.raises(ValueError, match="'enable_tf32_compute'"):
        hgc.solver_parser_helper(use_mixed_precision=True, enable_tf32_compute=True)
    with pytest.raises(ValueError, match="'embedding_files' = 'a.model'"):
        hgc.solver_parser_helper(embedding_files="a.model")
    with pytest.raises(TypeError, match="'max_iter'"):
        hgc.solver_parser_helper(max_iter=100)


def test_session_loads_the_config():
    sess = hgc.Session(hgc.solver_parser_helper(batchsize=512, batchsize_eval=512, i64_input_key=True), CONFIG)
    assert sess.graph.node("data").attrs["key_dtype"] == "int64"
    assert sess.embedding_names() == ["sparse_embedding2", "sparse_embedding1"]
    assert sess.compiled.graph.find("FusedInnerProduct")
    assert sess.pass_context().batchsize == 512


def test_session_argument_checks(tmp_path):
    solver = hgc.solver_parser_helper(batchsize=512, batchsize_eval=512)
    with pytest.raises(ValueError, match="'config_file' = .* no such file"):
        hgc.Session(solver, str(tmp_path / "missing.json"))
    with pytest.raises(TypeError, match="'solver_config' must be a hugectr.SolverParser"):
        hgc.Session(hgc.CreateSolver(), CONFIG)
    with pytest.raises(ValueError, match="'temp_embedding_dir'"):
        hgc.Session(solver, CONFIG, True, str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="'model_file' = 'dense.model' .* no such file"):
        hgc.Session(hgc.solver_parser_helper(batchsize=8, batchsize_eval=8, model_file="dense.model"), CONFIG)
    with pytest.raises(ValueError, match=r"'embedding_files' .* one file per embedding .*\(2\)"):
        hgc.Session(hgc.solver_parser_helper(batchsize=8, batchsize_eval=8, embedding_files=[CONFIG]), CONFIG)
    sess = hgc.Session(solver, CONFIG)
    with pytest.raises(ValueError, match="give both export file names or neither"):
        sess.evaluation("pred.txt")
    with pytest.raises(ValueError, match="use_model_oversubscriber=True"):
        sess.get_model_oversubscriber()
    with pytest.raises(ValueError, match="'model_file' = .* no such file"):
        sess.init_params(str(tmp_path / "x.model"))
    prefetching = hgc.Session(solver, CONFIG, use_model_prefetcher=True, temp_embedding_dir=str(tmp_path))
    assert isinstance(prefetching.get_model_prefetcher(), hgc.ModelPrefetcher)
    with pytest.raises(TypeError, match="'use_gpu'"):
        hgc.Session(solver, CONFIG, use_gpu=True)


def test_session_under_compile_only_runs_a_2_3_loop():
    n = len(model_module.COMPILED_MODELS)
    solver = hgc.solver_parser_helper(batchsize=512, batchsize_eval=512, repeat_dataset=False)
    with config.patch(compile_only=True):
        sess = hgc.Session(solver, CONFIG, True, "")  # no temp folder is needed when nothing runs
        lr_sch = hgc.get_learning_rate_scheduler(CONFIG)
        train_reader = sess.get_data_reader_train()
        eval_reader = sess.get_data_reader_eval()
        eval_reader.set_file_list_source("file_list.5.txt")
        prefetcher = sess.get_model_oversubscriber()
        steps = 0
        for file_list, keyset in [("file_list.0.txt", "file_list.0.keyset")]:
            train_reader.set_file_list_source(file_list)
            prefetcher.update(keyset)
            while True:
                sess.set_learning_rate(lr_sch.get_next())
                if not sess.train():
                    break
                steps += 1
        metrics = sess.evaluation()
        sess.download_params_to_files("./", steps)
    assert steps == 0 and metrics == [] and isinstance(prefetcher, hgc.ModelPrefetcher)
    assert isinstance(train_reader, hgc.DataReader32)
    assert model_module.COMPILED_MODELS[n:] == [sess]
    del model_module.COMPILED_MODELS[n:]


def test_get_learning_rate_scheduler_reads_the_optimizer_section(tmp_path):
    sch = hgc.get_learning_rate_scheduler(CONFIG)
    assert isinstance(sch, hgc.LearningRateScheduler)
    assert [sch.get_next() for _ in range(3)] == pytest.approx([0.001] * 3)
    text = Path(CONFIG).read_text().replace('"learning_rate": 0.001,', '"learning_rate": 0.4, "warmup_steps": 4,')
    path = tmp_path / "warm.json"
    path.write_text(text)
    warm = hgc.get_learning_rate_scheduler(str(path))
    assert [warm.get_next() for _ in range(5)] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4])
