"""From the frontend's checked objects to the runtime's plain settings, and the runtime itself."""
from __future__ import annotations

from typing import Any

from hgc.frontend.optimizer import OptParamsPy
from hgc.frontend.reader_params import DataReaderParams
from hgc.frontend.solver import Solver
from hgc.runtime.run_config import ReaderConfig, RunConfig


def reader_config(p: DataReaderParams) -> ReaderConfig:
    return ReaderConfig(
        format=p.data_reader_type.name, source=tuple(p.source), eval_source=p.eval_source,
        check_type=p.check_type.name, num_samples=p.num_samples, eval_num_samples=p.eval_num_samples,
        float_label_dense=p.float_label_dense, num_workers=p.num_workers,
        slot_size_array=tuple(p.slot_size_array), cache_eval_data=p.cache_eval_data,
        read_file_sequentially=p.read_file_sequentially)


def solver_fields(s: Any) -> dict[str, Any]:
    """The RunConfig fields a 3.x Solver and a 2.3 solver_parser_helper config share."""
    return dict(
        seed=s.seed, batchsize=s.batchsize, batchsize_eval=s.batchsize_eval, max_eval_batches=s.max_eval_batches,
        repeat_dataset=s.repeat_dataset, use_mixed_precision=s.use_mixed_precision,
        enable_tf32_compute=s.enable_tf32_compute, scaler=s.scaler,
        metrics_spec=tuple((m.name, float(v)) for m, v in sorted(s.metrics_spec.items(), key=lambda kv: kv[0].value)),
        i64_input_key=s.i64_input_key, vvgpu=tuple(tuple(g) for g in s.vvgpu), use_cuda_graph=s.use_cuda_graph,
        num_iterations_statistics=getattr(s, "num_iterations_statistics", 20))


def run_config(solver: Solver, reader: DataReaderParams | None, opt: OptParamsPy, target: str) -> RunConfig:
    s = solver
    return RunConfig(
        **solver_fields(s), lr=s.lr, warmup_steps=s.warmup_steps, decay_start=s.decay_start,
        decay_steps=s.decay_steps, decay_power=s.decay_power, end_lr=s.end_lr,
        drop_incomplete_batch=s.drop_incomplete_batch, gen_loss_summary=s.gen_loss_summary,
        optimizer=dict(opt.to_attrs()), reader=reader_config(reader) if reader else ReaderConfig(),
        target=target)


def make_runtime(model: Any) -> Any:
    """The training runtime of a compiled Model, on the active target (the Trainer makes its executor)."""
    from hgc.frontend.target import active_target
    from hgc.runtime.session import TrainingSession

    cfg = run_config(model.solver, model.reader_params, model.opt_params, active_target())
    return TrainingSession(model.graph, model.compiled, cfg, model.loss_weights)


def session_run_config(session: Any, target: str) -> RunConfig:
    """Settings of a 2.3 ``Session``: solver_parser_helper's values plus the JSON config's optimizer and
    Data layer."""
    s, cfg = session.solver_config, session.config
    opt, rd = dict(cfg.optimizer), dict(cfg.reader)
    source = rd.get("source", "")
    reader = ReaderConfig(
        format=str(rd.get("format", "Norm")), source=tuple(source if isinstance(source, list) else [source]),
        eval_source=str(rd.get("eval_source", "")), check_type=str(rd.get("check", "Sum")),
        num_samples=int(rd.get("num_samples", 0)), eval_num_samples=int(rd.get("eval_num_samples", 0)),
        slot_size_array=tuple(rd.get("slot_size_array", ())))
    return RunConfig(
        **solver_fields(s),
        lr=float(opt.pop("learning_rate", 0.001)), warmup_steps=int(opt.pop("warmup_steps", 1)),
        decay_start=int(opt.pop("decay_start", 0)), decay_steps=int(opt.pop("decay_steps", 1)),
        decay_power=float(opt.pop("decay_power", 2.0)), end_lr=float(opt.pop("end_lr", 0.0)),
        optimizer=opt, reader=reader, target=target)


def make_session_runtime(session: Any) -> Any:
    """The runtime of a 2.3 Session, with solver_parser_helper's model_file / embedding_files loaded."""
    from hgc.frontend.target import active_target
    from hgc.runtime.session import TrainingSession

    rt = TrainingSession(session.graph, session.compiled, session_run_config(session, active_target()))
    s = session.solver_config
    if s.model_file:
        rt.load_dense_weights(s.model_file, None)
    if s.embedding_files:
        rt.load_sparse_weights(dict(zip(session.embedding_names(), s.embedding_files)), None)
    return rt
