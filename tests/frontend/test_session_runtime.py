"""The 2.3 API trains on the cpu target: solver_parser_helper + Session(solver, JSON), the sess.train() loop
with file-list switching, evaluation, saving and starting from the saved model files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import hgc
from hgc.errors import TrainingError
from tests.runtime.tiny import BATCH, Data, make_data

FULL_BATCHES = 2 * 300 // BATCH  # per pass over the training files (short last batch dropped)
EVAL_BATCHES = -(-300 // BATCH)


def config(data: Data) -> dict:
    """A 2.x configuration of a tiny Wide&Deep over the tiny dataset (3 dense features, 1 wide slot of 2 keys,
    2 deep slots of 1 key)."""
    def emb(name: str, bottom: str, vec: int, combiner: int) -> dict:
        return {"name": name, "type": "DistributedSlotSparseEmbeddingHash", "bottom": bottom, "top": name,
                "sparse_embedding_hparam": {"max_vocabulary_size_per_gpu": 1000, "embedding_vec_size": vec,
                                            "combiner": combiner}}

    return {
        "solver": {"batchsize": 4096, "max_iter": 1000},  # ignored: solver_parser_helper decides
        "optimizer": {"type": "Adam", "update_type": "Global",
                      "adam_hparam": {"learning_rate": 0.01, "warmup_steps": 3, "beta1": 0.9, "beta2": 0.999,
                                      "epsilon": 1e-7}},
        "layers": [
            {"name": "data", "type": "Data", "format": "Norm", "source": data.train, "eval_source": data.test,
             "check": "Sum", "label": {"top": "label", "label_dim": 1}, "dense": {"top": "dense", "dense_dim": 3},
             "sparse": [{"top": "wide_data", "type": "DistributedSlot", "max_feature_num_per_sample": 2,
                         "slot_num": 1},
                        {"top": "deep_data", "type": "DistributedSlot", "max_feature_num_per_sample": 2,
                         "slot_num": 2}]},
            emb("sparse_embedding2", "wide_data", 1, 0),
            emb("sparse_embedding1", "deep_data", 4, 1),
            {"name": "reshape1", "type": "Reshape", "bottom": "sparse_embedding1", "top": "reshape1",
             "leading_dim": 8},
            {"name": "reshape2", "type": "Reshape", "bottom": "sparse_embedding2", "top": "reshape2",
             "leading_dim": 1},
            {"name": "concat1", "type": "Concat", "bottom": ["reshape1", "dense"], "top": "concat1"},
            {"name": "fc1", "type": "InnerProduct", "bottom": "concat1", "top": "fc1", "fc_param": {"num_output": 8}},
            {"name": "relu1", "type": "ReLU", "bottom": "fc1", "top": "relu1"},
            {"name": "fc2", "type": "InnerProduct", "bottom": "relu1", "top": "fc2", "fc_param": {"num_output": 1}},
            {"name": "add1", "type": "Add", "bottom": ["fc2", "reshape2"], "top": "add1"},
            {"name": "loss", "type": "BinaryCrossEntropyLoss", "bottom": ["add1", "label"], "top": "loss"},
        ]}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Data, Data, str]:
    root = tmp_path_factory.mktemp("session_2_3")
    data = make_data(str(root / "a"))
    other = make_data(str(root / "b"), seed=31, num_files=1, samples_per_file=100)
    path = root / "wdl.json"
    path.write_text(json.dumps(config(data)))
    return data, other, str(path)


def solver(**kw) -> hgc.SolverParser:
    return hgc.solver_parser_helper(**{"seed": 4, "batchsize": BATCH, "batchsize_eval": BATCH,
                                       "max_eval_batches": 4, **kw})


def test_epoch_mode_loop_with_file_list_switching(files, tmp_path) -> None:
    data, other, cfg = files
    sess = hgc.Session(solver(repeat_dataset=False), cfg)
    lr_sch = hgc.get_learning_rate_scheduler(cfg)
    sess.start_data_reading()
    reader_train, reader_eval = sess.get_data_reader_train(), sess.get_data_reader_eval()
    reader_eval.set_file_list_source(data.test)
    steps, lrs, aucs = [], [], []
    for file_list in (data.train, other.train, data.train):
        reader_train.set_file_list_source(file_list)
        n = 0
        while True:
            lr = lr_sch.get_next()
            sess.set_learning_rate(lr)
            if not sess.train():
                break
            lrs.append(lr)
            assert np.isfinite(sess.get_current_loss())
            n += 1
        assert reader_train.is_eof()
        steps.append(n)
        aucs.append(dict(sess.evaluation())["AUC"])
        assert not reader_eval.is_eof()  # evaluation() read the whole source and started it over
    assert steps == [FULL_BATCHES, 100 // BATCH, FULL_BATCHES]
    assert lrs[:3] == pytest.approx([0.01 / 3, 0.02 / 3, 0.01]) and lrs[3] == 0.01
    assert aucs[-1] > 0.75 and aucs[-1] > aucs[0]
    # the whole evaluation source, every batch exported
    pred, label = str(tmp_path / "pred.txt"), str(tmp_path / "label.txt")
    again = dict(sess.evaluation(pred, label))
    assert again["AUC"] == pytest.approx(aucs[-1])  # nothing trained since: same batches, same value
    rows = [[len(line.split()) for line in Path(f).read_text().splitlines()] for f in (pred, label)]
    assert rows[0] == rows[1] == [BATCH] * (EVAL_BATCHES - 1) + [300 % BATCH]  # the short last batch: real rows


def test_hand_written_eval_loop(files) -> None:
    cfg = files[2]
    sess = hgc.Session(solver(repeat_dataset=False, max_eval_batches=100), cfg)
    reader_eval = sess.get_data_reader_eval()
    for _ in range(10):
        assert sess.train()
    values = []
    for _ in range(2):
        good, j = True, 0
        while good and j < sess.solver_config.max_eval_batches:
            good = sess.eval()
            j += 1
        assert not good and j == EVAL_BATCHES + 1 and reader_eval.is_eof()
        reader_eval.set_file_list_source()
        values.append(sess.get_eval_metrics())
    assert values[0] == values[1]


def test_non_epoch_session_and_restart_from_saved_files(files, tmp_path) -> None:
    _, _, cfg = files
    sess = hgc.Session(solver(repeat_dataset=True), cfg)
    for _ in range(FULL_BATCHES + 5):  # wraps around the source
        assert sess.train()
    sess.download_params_to_files(str(tmp_path / "wdl"), 22)
    metrics = sess.evaluation()
    assert sess.get_params_num() > 0
    names = ["sparse_embedding2", "sparse_embedding1"]
    assert sess.embedding_names() == names
    restarted = hgc.Session(solver(repeat_dataset=True, model_file=str(tmp_path / "wdl_dense_22.model"),
                                   embedding_files=[str(tmp_path / f"wdl{i}_sparse_22.model") for i in range(2)]),
                            cfg)
    assert restarted.evaluation() == metrics  # 4 batches of the evaluation source, the same model
    fresh = hgc.Session(solver(repeat_dataset=True), cfg)
    assert fresh.evaluation() != metrics
    fresh.init_params(str(tmp_path / "wdl_dense_22.model"))  # dense weights only: still differs
    assert fresh.evaluation() != metrics


def test_evaluation_source_set_through_the_reader(files, tmp_path) -> None:
    data, _, _ = files
    cfg = config(data)
    del cfg["layers"][0]["eval_source"]
    path = tmp_path / "no_eval.json"
    path.write_text(json.dumps(cfg))
    sess = hgc.Session(solver(repeat_dataset=False), str(path))
    assert sess.train()
    with pytest.raises(TrainingError, match="no eval data source"):
        sess.eval()
    sess.get_data_reader_eval().set_file_list_source(data.test)
    assert np.isfinite(dict(sess.evaluation())["AUC"])


def test_lazy_global_with_another_optimizer_is_refused(files, tmp_path) -> None:
    data, _, _ = files
    cfg = config(data)
    cfg["optimizer"] = {"type": "SGD", "update_type": "LazyGlobal", "sgd_hparam": {"learning_rate": 0.1}}
    path = tmp_path / "lazy.json"
    path.write_text(json.dumps(cfg))
    # refused when the file is read, naming the file and the key (GraphError is a ValueError)
    with pytest.raises(ValueError, match=r"lazy\.json.*'optimizer\.update_type' \"LazyGlobal\" works only with the "
                                         r"Adam optimizer, got type \"SGD\""):
        hgc.Session(solver(repeat_dataset=False), str(path))
