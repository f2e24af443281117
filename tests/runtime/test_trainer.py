"""The shared training loop on the cpu target: optimizers and update types through the API, the learning-rate
schedule, freezing, NaN losses, determinism, numerics under the pass pipeline, the progress bar."""
from __future__ import annotations

import io
import math
import re

import numpy as np
import pytest

import hgc
from hgc.errors import TrainingError
from hgc.runtime import logging as log
from hgc.runtime.lr_scheduler import LearningRateScheduler
from tests.runtime.tiny import Data, dense_weights, dlrm, runtime, table_rows, train_steps, wdl

Opt, Upd = hgc.Optimizer_t, hgc.Update_t
LR = {"Adam": 0.01, "AdaGrad": 0.1, "MomentumSGD": 0.05, "Nesterov": 0.05, "SGD": 0.2}
COMBOS = [(o, u) for o in LR for u in ("Global", "Local")] + [("Adam", "LazyGlobal")]
WITH_LOSS = {hgc.MetricsType.AUC: 1.0, hgc.MetricsType.AverageLoss: 0.0}


def optimizer(name: str, update: str = "Global") -> hgc.OptParamsPy:
    momentum = 0.9 if name in ("MomentumSGD", "Nesterov") else 0.0
    return hgc.CreateOptimizer(optimizer_type=getattr(Opt, name), update_type=getattr(Upd, update),
                               momentum_factor=momentum)


def eval_loss(m: hgc.Model, batches: int = 6) -> float:
    """AverageLoss over the first ``batches`` evaluation batches (the reader is started over first)."""
    m.get_data_reader_eval().set_source()
    for _ in range(batches):
        assert m.eval()
    return dict(m.get_eval_metrics())["AverageLoss"]


def rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# -- optimizers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,update", COMBOS)
def test_every_optimizer_and_update_type_trains(data: Data, name: str, update: str) -> None:
    m = wdl(data, optimizer(name, update), lr=LR[name], metrics_spec=WITH_LOSS)
    before = eval_loss(m)
    losses = train_steps(m, 60)
    after = eval_loss(m)
    assert all(math.isfinite(x) for x in losses)
    assert after < before - 0.1, (before, after)
    opt = runtime(m).trainer.sparse_opts["e_deep"]
    assert (opt.optimizer, opt.update_type) == (name, update)


@pytest.mark.parametrize("name", list(LR))
def test_update_type_reaches_the_embeddings(data: Data, name: str) -> None:
    rows = {}
    for update in ("Global", "Local"):
        m = wdl(data, optimizer(name, update), lr=LR[name])
        train_steps(m, 15)
        rows[update] = table_rows(m, "e_deep")
    same = np.array_equal(rows["Global"], rows["Local"])
    assert same == (name in ("SGD", "AdaGrad"))  # facts §3.3: for SGD and AdaGrad Global behaves as Local


def test_lazy_global_needs_adam() -> None:
    with pytest.raises(ValueError, match="'update_type'.*LazyGlobal works only with Optimizer_t.Adam"):
        hgc.CreateOptimizer(optimizer_type=Opt.SGD, update_type=Upd.LazyGlobal)
    with pytest.raises(ValueError, match="LazyGlobal.*Adam"):
        hgc.CreateOptimizer(optimizer_type=Opt.MomentumSGD, update_type=Upd.LazyGlobal)


def test_ftrl_trains_the_dense_part_with_embeddings_on_their_own_optimizer(data: Data) -> None:
    ftrl = hgc.CreateOptimizer(optimizer_type=Opt.Ftrl, beta=1.0, lambda1=0.0, lambda2=0.0)
    m = wdl(data, ftrl, emb_opt=optimizer("Adam"), lr=0.05, metrics_spec=WITH_LOSS)
    before = eval_loss(m)
    train_steps(m, 60)
    assert eval_loss(m) < before - 0.05
    assert runtime(m).trainer.dense_opt.name == "Ftrl"


def test_optimizers_the_embeddings_lack_are_named(data: Data) -> None:
    m = wdl(data, hgc.CreateOptimizer(optimizer_type=Opt.Ftrl))
    with pytest.raises(ValueError, match="embedding 'e_wide': optimizer_type='Ftrl' is not available for "
                                         "embeddings"):
        m.train()
    m = wdl(data, hgc.CreateOptimizer(optimizer_type=Opt.RMSProp), emb_opt=optimizer("Adam"))
    with pytest.raises(ValueError, match="optimizer_type='RMSProp' is not supported"):
        m.train()


# -- learning-rate schedule -----------------------------------------------------------------------------
SCHEDULE = {"lr": 0.02, "warmup_steps": 3, "decay_start": 5, "decay_steps": 4, "decay_power": 2.0, "end_lr": 0.002}


def test_fit_takes_every_learning_rate_from_the_scheduler(data: Data, capsys: pytest.CaptureFixture) -> None:
    m = wdl(data, optimizer("SGD"), **SCHEDULE)
    m.fit(max_iter=11, display=1, eval_interval=100, snapshot=100)
    printed = [float(x) for x in re.findall(r"Iter: \d+ .* lr:([0-9.]+)", capsys.readouterr().out)]
    expect = LearningRateScheduler(0.02, 3, 5, 4, 2.0, 0.002)
    assert printed == pytest.approx([expect.get_next() for _ in range(11)], abs=1e-6)
    assert printed[:3] == pytest.approx([0.02 / 3, 0.04 / 3, 0.02], abs=1e-6) and printed[-1] == 0.002
    assert m.get_learning_rate_scheduler().get_next() == pytest.approx(expect.get_next())  # it goes on


def test_low_level_loop_equals_fit(data: Data) -> None:
    a = wdl(data, **SCHEDULE)
    a.fit(max_iter=10, display=100, eval_interval=100, snapshot=100)
    b = wdl(data, **SCHEDULE)
    b.start_data_reading()
    train_steps(b, 10)  # lr = get_next(); set_learning_rate(lr); train()
    for wa, wb in zip(dense_weights(a), dense_weights(b)):
        assert np.array_equal(wa, wb)
    assert np.array_equal(table_rows(a, "e_deep"), table_rows(b, "e_deep"))


def test_set_learning_rate_is_the_rate_of_the_next_steps(data: Data) -> None:
    m = wdl(data, optimizer("SGD"))
    w0, e0 = dense_weights(m), table_rows(m, "e_deep")
    m.set_learning_rate(0.0)
    assert m.train()
    assert all(np.array_equal(x, y) for x, y in zip(w0, dense_weights(m)))
    assert np.array_equal(e0, table_rows(m, "e_deep"))
    m.set_learning_rate(0.1)
    assert m.train()
    assert not np.array_equal(w0[0], dense_weights(m)[0])


def test_reset_learning_rate_scheduler(data: Data) -> None:
    m = wdl(data, **SCHEDULE)
    sched = m.get_learning_rate_scheduler()
    for _ in range(7):
        sched.get_next()
    m.reset_learning_rate_scheduler(base_lr=0.5, warmup_steps=2, decay_start=3, decay_steps=2, decay_power=1.0,
                                    end_lr=0.1)
    assert [sched.get_next() for _ in range(6)] == pytest.approx([0.25, 0.5, 0.5, 0.25, 0.1, 0.1])
    with pytest.raises(ValueError, match="'decay_power'"):
        m.reset_learning_rate_scheduler(base_lr=0.5, decay_power=0.5)


# -- NaN / Inf ---------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
def test_exploding_loss_names_the_iteration(data: Data) -> None:
    m = wdl(data, optimizer("SGD"), lr=1e30)
    with pytest.raises(TrainingError, match=r"Loss cannot converge \(loss = (nan|inf) at iteration 2\)"):
        m.fit(max_iter=10, display=100, eval_interval=100, snapshot=100)


def test_nan_in_the_data_names_the_iteration(data: Data) -> None:
    m = wdl(data)
    train_steps(m, 3)
    trainer = runtime(m).trainer
    batch = trainer._next_batch("train")
    batch.dense[5, 1] = np.nan
    weights = dense_weights(m)
    with pytest.raises(TrainingError, match="at iteration 4"):
        trainer.step(batch)
    assert all(np.array_equal(a, b) for a, b in zip(weights, dense_weights(m)))  # no update with a NaN loss


# -- freezing ------------------------------------------------------------------------------------------
def test_freeze_and_unfreeze(data: Data, capsys: pytest.CaptureFixture) -> None:
    m = wdl(data)
    train_steps(m, 5)
    m.freeze_dense()
    m.freeze_embedding("e_wide")
    dense, wide, deep = dense_weights(m), table_rows(m, "e_wide"), table_rows(m, "e_deep")
    steps = runtime(m).trainer.dense_opt.step_count
    m.fit(max_iter=10, display=100, eval_interval=100, snapshot=100)
    out = capsys.readouterr().out
    assert "Dense network trainable: False" in out and "Sparse embedding e_wide trainable: False" in out
    assert "Sparse embedding e_deep trainable: True" in out
    assert all(np.array_equal(a, b) for a, b in zip(dense, dense_weights(m)))
    assert np.array_equal(wide, table_rows(m, "e_wide"))
    assert not np.array_equal(deep, table_rows(m, "e_deep"))
    assert runtime(m).trainer.dense_opt.step_count == steps
    m.unfreeze_dense()
    m.unfreeze_embedding()
    m.freeze_embedding()  # every embedding
    deep = table_rows(m, "e_deep")
    train_steps(m, 3)
    assert not np.array_equal(dense[0], dense_weights(m)[0]) and np.array_equal(deep, table_rows(m, "e_deep"))
    m.unfreeze_embedding("e_wide")
    train_steps(m, 3)
    assert not np.array_equal(wide, table_rows(m, "e_wide")) and np.array_equal(deep, table_rows(m, "e_deep"))
    with pytest.raises(ValueError, match="'embedding_name' = 'nope'"):
        m.freeze_embedding("nope")


# -- determinism --------------------------------------------------------------------------------------
def test_same_seed_same_run(data: Data) -> None:
    runs = [train_steps(wdl(data, seed=s, dropout=0.3), 25) for s in (11, 11, 12)]
    assert runs[0] == runs[1]  # bitwise, Dropout masks included
    assert runs[0] != runs[2]


# -- the pass pipeline leaves the numerics alone ------------------------------------------------------------
FUSIONS = frozenset({"FuseInnerProductReLU", "GroupFusedInnerProduct", "FuseReshapeConcat"})


@pytest.mark.parametrize("build", [wdl, dlrm], ids=["wdl", "dlrm"])
def test_fusions_do_not_change_the_losses(data: Data, build) -> None:
    fused, plain = build(data), build(data, disabled_passes=FUSIONS)
    ops = {n.op for n in fused.compiled.graph.nodes()}, {n.op for n in plain.compiled.graph.nodes()}
    assert ops[0] != ops[1]  # the pipelines really differ
    a, b = train_steps(fused, 6), train_steps(plain, 6)
    assert np.allclose(a, b, rtol=0, atol=1e-5), (a, b)
    assert rel(dense_weights(fused)[0], dense_weights(plain)[0]) < 1e-5


def test_a_layer_the_passes_drop_keeps_its_place_in_the_dense_file(data: Data, tmp_path) -> None:
    m = wdl(data, compile=False)
    m.add(hgc.DenseLayer(layer_type=hgc.Layer_t.InnerProduct, bottom_names=["dense"], top_names=["unused"],
                         num_output=5))
    m.compile()
    assert "unused" not in m.compiled.graph
    train_steps(m, 3)
    m.save_params_to_files(str(tmp_path / "m"), 2)
    n_weights = sum(w.size for w in dense_weights(m))
    assert (tmp_path / "m_dense_2.model").stat().st_size == 4 * n_weights
    assert dense_weights(m)[-2].shape == (3, 5)


# -- progress bar -------------------------------------------------------------------------------------------
class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_bar_only_on_a_terminal_of_rank_0() -> None:
    assert log.wants_progress_bar(_Stream(True), rank=0)
    assert not log.wants_progress_bar(_Stream(False), rank=0)
    assert not log.wants_progress_bar(_Stream(True), rank=1)


def test_log_lines_are_written_above_the_bar(capsys: pytest.CaptureFixture) -> None:
    with log.progress(3, enabled=True) as advance:
        log.info("between the updates")
        advance(2)
    out, err = capsys.readouterr()
    assert re.search(r"^\[HCTR\]\[[\d:.]+\]\[INFO\]\[RK0\]\[main\]: between the updates$", out, re.MULTILINE)
    assert "/3 [" in err  # tqdm's counter on stderr
    with log.progress(3, enabled=False) as advance:
        advance(1)
    assert capsys.readouterr().err == ""
