import pytest

import hgc
from hgc.config import config
from hgc.errors import DataError, GraphError, HgcError, ShapeError
from hgc.frontend import model as model_module
from hgc.ir.node import Attrs
from hgc.ir.registry import all_ops
from hgc.ir.types import B, TensorType

L = hgc.Layer_t


def needs_ops(*names):
    missing = [n for n in names if n not in all_ops()]
    return pytest.mark.skipif(bool(missing), reason=f"ops not registered yet: {missing}")


def reader(**kw):
    return hgc.DataReaderParams(data_reader_type=hgc.DataReaderType_t.Norm, source="train.txt",
                                eval_source="eval.txt", check_type=hgc.Check_t.Sum, **kw)


def new_model(solver=None, opt=None, etc=None, **solver_kw):
    solver = solver or hgc.CreateSolver(model_name="tiny", batchsize=8, batchsize_eval=8, **solver_kw)
    return hgc.Model(solver, reader(), opt or hgc.CreateOptimizer(), etc)


def with_input(m, dense_dim=5, slots=3, nnz=2):
    m.add(hgc.Input(label_dim=1, label_name="label", dense_dim=dense_dim, dense_name="dense",
                    data_reader_sparse_param_array=[hgc.DataReaderSparseParam("s", nnz, False, slots)]))
    return m


def tiny(m=None, **kw):
    m = with_input(m or new_model(**kw))
    m.add(hgc.SparseEmbedding(hgc.Embedding_t.DistributedSlotSparseEmbeddingHash, 1, 4, "sum", "emb", "s"))
    m.add(hgc.DenseLayer(L.Reshape, ["emb"], ["r"], leading_dim=12))
    m.add(hgc.DenseLayer(L.Concat, ["r", "dense"], ["c"]))
    m.add(hgc.DenseLayer(L.InnerProduct, ["c"], ["fc1"], num_output=7))
    m.add(hgc.DenseLayer(L.ReLU, ["fc1"], ["relu1"]))
    m.add(hgc.DenseLayer(L.InnerProduct, ["relu1"], ["fc2"], num_output=1))
    m.add(hgc.DenseLayer(L.BinaryCrossEntropyLoss, ["fc2", "label"], ["loss"]))
    return m


# -- building -------------------------------------------------------------------------------------------
def test_graph_meta_and_input_node():
    opt = hgc.CreateOptimizer(optimizer_type=hgc.Optimizer_t.SGD)
    m = with_input(new_model(opt=opt, i64_input_key=True))
    assert m.graph.meta == Attrs(model_name="tiny", optimizer=opt.to_attrs())
    n = m.graph.node("data")
    assert n.op == "Input" and n.outputs == ("label", "dense", "s")
    assert n.attrs["label_dims"] == (1,) and n.attrs["label_names"] == ("label",)
    assert n.attrs["sparse"] == (Attrs(name="s", slot_num=3, nnz_per_slot=(2, 2, 2), is_fixed_length=False),)
    assert n.attrs["key_dtype"] == "int64"
    assert n.types[2] == TensorType((B, 3, 2), "int64", sparse=True)


def test_multi_label_input_and_nnz_list():
    m = new_model()
    m.add(hgc.Input(label_dims=[1, 1], label_names=["l1", "l2"], dense_dim=0, dense_name="dense",
                    data_reader_sparse_param_array=[hgc.DataReaderSparseParam("s", [1, 4], True, 2)]))
    n = m.graph.node("data")
    assert n.outputs == ("l1", "l2", "dense", "s") and n.attrs["key_dtype"] == "uint32"
    assert n.types[3].shape == (B, 2, 4) and n.types[2].shape == (B, 0)


def test_embedding_node_contract():
    m = with_input(new_model())
    opt = hgc.CreateOptimizer(optimizer_type=hgc.Optimizer_t.AdaGrad, update_type=hgc.Update_t.Local)
    m.add(hgc.SparseEmbedding(embedding_type=hgc.Embedding_t.LocalizedSlotSparseEmbeddingHash,
                              workspace_size_per_gpu_in_mb=3, embedding_vec_size=8, combiner="mean",
                              sparse_embedding_name="e1", bottom_name="s", slot_size_array=[5, 6, 7], optimizer=opt))
    m.add(hgc.SparseEmbedding(hgc.Embedding_t.DistributedSlotSparseEmbeddingHash, 2, 4, "sum", "e2", "s"))
    e1, e2 = m.graph.node("e1"), m.graph.node("e2")
    assert e1.op == "LocalizedSlotSparseEmbeddingHash" and e1.inputs == ("s",) and e1.outputs == ("e1",)
    assert e1.attrs["optimizer"] == opt.to_attrs() and e1.attrs["slot_size_array"] == (5, 6, 7)
    assert e1.attrs["combiner"] == "mean" and e1.attrs["hybrid_embedding_param"] is None
    assert e1.types == (TensorType((B, 3, 8)),)
    assert e2.attrs["optimizer"] is None
    assert m.embedding_names() == ["e1", "e2"]


def test_dense_attrs_are_exactly_the_schema_arguments():
    m = tiny()
    fc = m.graph.node("fc1")
    assert dict(fc.attrs) == {"num_output": 7, "weight_init_type": "Default", "bias_init_type": "Default"}
    assert m.graph.node("r").attrs["leading_dim"] == 12
    loss = m.graph.node("loss")
    assert dict(loss.attrs) == {"use_regularizer": False, "regularizer_type": "L1", "lambda": 0.0}
    assert m.graph.node("r").types[0] == TensorType((B, 12))
    assert m.graph.node("c").types[0] == TensorType((B, 17))


def test_enum_arguments_stored_by_name():
    m = with_input(new_model())
    m.add(hgc.DenseLayer(L.InnerProduct, ["dense"], ["fc"], num_output=1,
                         weight_init_type=hgc.Initializer_t.XavierUniform, bias_init_type=hgc.Initializer_t.Zero))
    m.add(hgc.DenseLayer(L.BinaryCrossEntropyLoss, ["fc", "label"], ["loss"], use_regularizer=True,
                         regularizer_type=hgc.Regularizer_t.L2, **{"lambda": 0.5}))
    assert m.graph.node("fc").attrs["weight_init_type"] == "XavierUniform"
    assert m.graph.node("loss").attrs["regularizer_type"] == "L2" and m.graph.node("loss").attrs["lambda"] == 0.5


def test_group_dense_layer_expands_to_fused_layers():
    m = with_input(new_model(), dense_dim=6)
    m.add(hgc.GroupDenseLayer(hgc.GroupLayer_t.GroupFusedInnerProduct, ["dense"], ["a", "b", "c", "d"], [9, 8, 7, 1],
                              hgc.Activation_t.Non))
    nodes = [m.graph.node(t) for t in "abcd"]
    assert [n.op for n in nodes] == ["FusedInnerProduct"] * 4
    assert [n.attrs["pos_type"] for n in nodes] == ["Head", "Body", "Body", "Tail"]
    assert [n.attrs["act_type"] for n in nodes] == ["Relu", "Relu", "Relu", "Non"]
    assert [n.inputs for n in nodes] == [("dense",), ("a",), ("b",), ("c",)]
    assert nodes[3].types[0] == TensorType((B, 1))


def test_group_dense_layer_is_added_whole_or_not_at_all():
    m = with_input(new_model(), dense_dim=6)
    with pytest.raises(GraphError, match="top tensor 'label' is already produced by Input layer 'data'"):
        m.add(hgc.GroupDenseLayer(hgc.GroupLayer_t.GroupFusedInnerProduct, ["dense"], ["a", "b", "label"], [9, 8, 1]))
    # 'data' is the Input's node name, not a tensor: the second member fails after the first was added
    with pytest.raises(GraphError, match="a node named 'data' already exists"):
        m.add(hgc.GroupDenseLayer(hgc.GroupLayer_t.GroupFusedInnerProduct, ["dense"], ["a", "data", "c"], [9, 8, 1]))
    assert [n.name for n in m.graph.nodes()] == ["data"]
    m.add(hgc.GroupDenseLayer(hgc.GroupLayer_t.GroupFusedInnerProduct, ["dense"], ["a", "b"], [9, 1]))
    assert [n.name for n in m.graph.nodes()] == ["data", "a", "b"]


@needs_ops("Interaction", "FusedInnerProduct")
def test_interaction_two_tops_feed_a_group():
    m = with_input(new_model(), dense_dim=4, nnz=1)
    m.add(hgc.SparseEmbedding(hgc.Embedding_t.LocalizedSlotSparseEmbeddingOneHot, 0, 4, "sum", "e", "s",
                              slot_size_array=[3, 4, 5]))
    m.add(hgc.DenseLayer(L.Interaction, ["dense", "e"], ["i", "i_grad"]))
    assert m.graph.node("i").attrs["num_tops"] == 2
    assert m.graph.node("i").types[0] == TensorType((B, 4 + 6 + 1))
    m.add(hgc.GroupDenseLayer(hgc.GroupLayer_t.GroupFusedInnerProduct, bottom_name_list=["i", "i_grad"],
                              top_name_list=["f1", "f2"], num_outputs=[5, 1]))
    assert m.graph.node("f1").inputs == ("i", "i_grad")
    with pytest.raises(GraphError, match="Interaction layer 'x'.*one top name, or two"):
        m.add(hgc.DenseLayer(L.Interaction, ["dense", "e"], ["x", "y", "z"]))


# -- errors at add ----------------------------------------------------------------------------------------
def test_layer_before_input():
    m = new_model()
    with pytest.raises(GraphError, match="add the Input first"):
        m.add(hgc.SparseEmbedding(hgc.Embedding_t.DistributedSlotSparseEmbeddingHash, 1, 4, "sum", "e", "s"))
    with pytest.raises(GraphError, match="add the Input first"):
        m.add(hgc.DenseLayer(L.ReLU, ["x"], ["y"]))


def test_second_input():
    m = with_input(new_model())
    with pytest.raises(GraphError, match="already has an Input"):
        with_input(m)


def test_add_rejects_other_objects():
    with pytest.raises(TypeError, match="takes a hugectr.Input, SparseEmbedding, DenseLayer or GroupDenseLayer"):
        new_model().add(hgc.CreateOptimizer())


def test_embedding_bottom_must_be_sparse_input():
    m = with_input(new_model())
    with pytest.raises(GraphError, match="DistributedSlotSparseEmbeddingHash layer 'e': bottom_name 'dense' is "
                                         r"not a sparse input.*\['s'\]"):
        m.add(hgc.SparseEmbedding(hgc.Embedding_t.DistributedSlotSparseEmbeddingHash, 1, 4, "sum", "e", "dense"))


def test_unknown_bottom_names_layer_and_tensor():
    m = with_input(new_model())
    with pytest.raises(GraphError, match="InnerProduct layer 'fc'.*bottom tensor 'dens' is not produced"):
        m.add(hgc.DenseLayer(L.InnerProduct, ["dens"], ["fc"], num_output=2))


def test_duplicate_top():
    m = with_input(new_model())
    m.add(hgc.DenseLayer(L.InnerProduct, ["dense"], ["fc"], num_output=2))
    with pytest.raises(GraphError, match="top tensor 'fc' is already produced by InnerProduct layer 'fc'"):
        m.add(hgc.DenseLayer(L.ReLU, ["dense"], ["fc"]))


@needs_ops("Interaction")
def test_interaction_width_mismatch():
    m = with_input(new_model(), dense_dim=5)
    m.add(hgc.SparseEmbedding(hgc.Embedding_t.DistributedSlotSparseEmbeddingHash, 1, 4, "sum", "e", "s"))
    with pytest.raises(ShapeError, match=r"Interaction layer 'i'.*'dense' float32\(B, 5\).*'e' float32\(B, 3, 4\)"):
        m.add(hgc.DenseLayer(L.Interaction, ["dense", "e"], ["i"]))


@needs_ops("Slice")
def test_slice_out_of_range():
    m = with_input(new_model(), dense_dim=5)
    with pytest.raises(ShapeError, match=r"Slice layer 'a'.*\(3, 7\) exceeds the input width 5.*'dense'"):
        m.add(hgc.DenseLayer(L.Slice, ["dense"], ["a", "b"], ranges=[(0, 3), (3, 7)]))


@needs_ops("Reshape")
def test_reshape_non_divisible():
    m = with_input(new_model())
    m.add(hgc.SparseEmbedding(hgc.Embedding_t.DistributedSlotSparseEmbeddingHash, 1, 4, "sum", "e", "s"))
    with pytest.raises(ShapeError, match=r"Reshape layer 'r'.*non-divisible leading_dim 5.*'e' float32\(B, 3, 4\)"):
        m.add(hgc.DenseLayer(L.Reshape, ["e"], ["r"], leading_dim=5))


def test_op_rule_names_layer_argument_and_value():
    m = with_input(new_model())
    with pytest.raises(ValueError, match="MultiCross layer 'mc': argument 'num_layers' = 0 is not allowed"):
        m.add(hgc.DenseLayer(L.MultiCross, ["dense"], ["mc"]))


def test_loss_label_must_come_from_input():
    m = with_input(new_model())
    m.add(hgc.DenseLayer(L.InnerProduct, ["dense"], ["fc"], num_output=1))
    m.add(hgc.DenseLayer(L.InnerProduct, ["dense"], ["fc_b"], num_output=1))
    with pytest.raises(GraphError, match=r"BinaryCrossEntropyLoss layer 'loss'.*label tensors \['label'\]"):
        m.add(hgc.DenseLayer(L.BinaryCrossEntropyLoss, ["fc", "fc_b"], ["loss"]))


# -- compile ------------------------------------------------------------------------------------------------
def test_compile_runs_the_pipeline_and_keeps_the_user_graph():
    m = tiny()
    before = m.graph.nodes()
    m.compile()
    assert m.compiled is not None and m.graph.nodes() == before
    ops = [n.op for n in m.compiled.graph.nodes()]
    assert "FusedInnerProduct" in ops and "ReLU" not in ops
    assert m.loss_weights == {"label": 1.0}
    with pytest.raises(GraphError, match="already compiled"):
        m.add(hgc.DenseLayer(L.ReLU, ["fc2"], ["z"]))


def test_pass_context_from_solver():
    m = tiny(vvgpu=[[0, 1]], use_mixed_precision=True)
    with config.patch(target="cpu"):
        ctx = m.pass_context()
    assert (ctx.vvgpu, ctx.batchsize, ctx.batchsize_eval) == ([[0, 1]], 8, 8)
    assert ctx.use_mixed_precision and not ctx.enable_tf32_compute and ctx.target == "cpu"
    with config.patch(target="cuda"):
        assert m.pass_context().target == "cuda"


def test_compile_needs_a_loss_and_an_input():
    with pytest.raises(GraphError, match="no Input"):
        new_model().compile()
    m = with_input(new_model())
    m.add(hgc.DenseLayer(L.InnerProduct, ["dense"], ["fc"], num_output=1))
    with pytest.raises(GraphError, match="no loss layer"):
        m.compile()


def multi_task():
    m = new_model()
    m.add(hgc.Input(label_dim=[1, 1], label_name=["l1", "l2"], dense_dim=4, dense_name="dense"))
    for i in (1, 2):
        m.add(hgc.DenseLayer(L.InnerProduct, ["dense"], [f"fc{i}"], num_output=1))
        m.add(hgc.DenseLayer(L.BinaryCrossEntropyLoss, [f"fc{i}", f"l{i}"], [f"loss{i}"]))
    return m


def test_compile_loss_weights():
    m = multi_task()
    m.compile(loss_names=["l1", "loss2"], loss_weights=[0.25, 0.75])
    assert m.loss_weights == {"l1": 0.25, "l2": 0.75}
    m2 = multi_task()
    m2.compile(loss_names=["l2"], loss_weights=[0.5])
    assert m2.loss_weights == {"l1": 1.0, "l2": 0.5}
    with pytest.raises(ValueError, match="'loss_weights' .* one weight per loss name"):
        multi_task().compile(loss_names=["l1", "l2"], loss_weights=[1.0])
    with pytest.raises(ValueError, match="'loss_names' = 'dense' .* label tensor"):
        multi_task().compile(loss_names=["dense"], loss_weights=[1.0])
    with pytest.raises(ValueError, match="at most once"):
        multi_task().compile(loss_names=["l1", "loss1"], loss_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="'loss_weights' = -1.0"):
        multi_task().compile(loss_names=["l1"], loss_weights=[-1.0])


def test_compile_only_collects_models_and_runtime_calls_return(tmp_path):
    n = len(model_module.COMPILED_MODELS)
    m = tiny()
    with config.patch(compile_only=True):
        m.compile()
    assert model_module.COMPILED_MODELS[n:] == [m]
    m.fit(max_iter=10, display=1, eval_interval=5, snapshot=5)
    m.start_data_reading()
    assert m.train() is False and m.eval() is False and m.get_eval_metrics() == []
    assert m.get_current_loss() == 0.0
    assert m.get_learning_rate_scheduler().get_next() == pytest.approx(0.001)
    reader_ = m.get_data_reader_train()
    assert isinstance(reader_, hgc.DataReader32) and reader_.is_eof()
    reader_.set_source("not_generated_yet.txt")  # no file is read under compile-only
    m.load_dense_weights("missing_dense.model")
    m.load_sparse_weights(["missing_sparse.model"])
    m.freeze_dense()
    m.freeze_embedding("emb")
    m.save_params_to_files("tiny", 10)
    with config.patch(compile_only=True):
        m.compile()  # compiling again does not list the model twice
    assert model_module.COMPILED_MODELS[n:] == [m]
    del model_module.COMPILED_MODELS[n:]


# -- the runtime -----------------------------------------------------------------------------------------------
RUNTIME_CALLS = {
    "fit": lambda m: m.fit(),
    "train": lambda m: m.train(),
    "eval": lambda m: m.eval(),
    "get_eval_metrics": lambda m: m.get_eval_metrics(),
    "get_current_loss": lambda m: m.get_current_loss(),
    "start_data_reading": lambda m: m.start_data_reading(),
    "set_learning_rate": lambda m: m.set_learning_rate(0.01),
    "freeze_dense": lambda m: m.freeze_dense(),
    "unfreeze_dense": lambda m: m.unfreeze_dense(),
    "freeze_embedding": lambda m: m.freeze_embedding(),
    "unfreeze_embedding": lambda m: m.unfreeze_embedding("emb"),
    "reset_learning_rate_scheduler": lambda m: m.reset_learning_rate_scheduler(0.1, warmup_steps=10),
    "get_learning_rate_scheduler": lambda m: m.get_learning_rate_scheduler(),
    "get_data_reader_train": lambda m: m.get_data_reader_train(),
    "get_data_reader_eval": lambda m: m.get_data_reader_eval(),
    "save_params_to_files": lambda m: m.save_params_to_files("p"),
    "export_predictions": lambda m: m.export_predictions("pred.txt", "label.txt"),
    "check_out_tensor": lambda m: m.check_out_tensor("fc1", hgc.Tensor_t.Evaluate),
}


@pytest.mark.parametrize("method", list(RUNTIME_CALLS))
def test_runtime_calls_need_compile(method):
    m = tiny()
    with pytest.raises(RuntimeError, match=rf"Model.{method}\(\): call Model.compile\(\) first"):
        RUNTIME_CALLS[method](m)


def test_load_calls_check_files_and_embedding_names(tmp_path):
    m = tiny()
    m.compile()
    dense = tmp_path / "tiny_dense_0.model"
    dense.write_bytes(b"\0" * 8)
    sparse = tmp_path / "tiny0_sparse_0.model"
    sparse.mkdir()
    with pytest.raises(ValueError, match="'dense_model_file' = 'nope.model' .* no such file"):
        m.load_dense_weights("nope.model")
    with pytest.raises(DataError, match="tiny_dense_0.model"):  # 8 bytes cannot hold the weights
        m.load_dense_weights(str(dense))
    with pytest.raises(ValueError, match="'dense_opt_states_file'"):
        m.load_dense_optimizer_states(str(tmp_path / "x"))
    with pytest.raises(ValueError, match=r"'sparse_embedding_files' .* one entry per embedding \(1"):
        m.load_sparse_weights([str(sparse), str(sparse)])
    with pytest.raises(ValueError, match=r"key 'emb2' is not an embedding.*\['emb'\]"):
        m.load_sparse_weights({"emb2": str(sparse)})
    with pytest.raises(DataError, match="tiny0_sparse_0.model"):  # an empty folder has no key file
        m.load_sparse_weights({"emb": str(sparse)})
    with pytest.raises(DataError, match="tiny0_sparse_0.model"):
        m.load_sparse_weights(sparse_embedding_files_map={"emb": str(sparse)})
    with pytest.raises(ValueError, match="'sparse_opt_states_files_map' = .*missing"):
        m.load_sparse_optimizer_states(sparse_opt_states_files_map={"emb": str(tmp_path / "missing")})
    with pytest.raises(TypeError, match="both 'sparse_embedding_files' and 'sparse_embedding_files_map'"):
        m.load_sparse_weights([str(sparse)], sparse_embedding_files_map={"emb": str(sparse)})
    with pytest.raises(TypeError, match="data_source_params"):
        m.load_dense_weights(str(dense), data_source_params="hdfs")


def test_runtime_argument_checks():
    m = tiny()
    m.compile()
    with pytest.raises(ValueError, match="'embedding_name' = 'nope' .*embeddings: \\['emb'\\]"):
        m.freeze_embedding("nope")
    with pytest.raises(ValueError, match="'max_iter' = 0 .* non-epoch mode"):
        m.fit(max_iter=0)
    with pytest.raises(ValueError, match="'display' = 0"):
        m.fit(display=0)
    with pytest.raises(TypeError, match="'epochs'"):
        m.fit(epochs=3)
    with pytest.raises(ValueError, match="'base_lr' = -1"):
        m.reset_learning_rate_scheduler(-1)
    with pytest.raises(TypeError, match="missing required argument 'base_lr'"):
        m.reset_learning_rate_scheduler()
    with pytest.raises(ValueError, match="'tensor_name' = 'nope'"):
        m.check_out_tensor("nope", hgc.Tensor_t.Train)
    with pytest.raises(ValueError, match="'tensor_type' = 'Both'"):
        m.check_out_tensor("fc1", "Both")
    with pytest.raises(ValueError, match="'iter' = -1"):
        m.save_params_to_files("p", -1)
    with pytest.raises(ValueError, match="'etc' = None .* embedding training cache"):
        m.get_incremental_model()
    with pytest.raises(ValueError, match="'etc'"):
        m.get_embedding_training_cache()
    with pytest.raises(ValueError, match="'source' = 'a' .* epoch mode"):
        m.set_source("a", "b")


def test_epoch_mode_fit_and_set_source(tmp_path):
    m = tiny(repeat_dataset=False)
    m.compile()
    with pytest.raises(ValueError, match="'num_epochs' = 0 .* epoch mode"):
        m.fit()
    with pytest.raises(HgcError):  # the runtime opens the (missing) training file list
        m.fit(num_epochs=1)
    src, ev = tmp_path / "train.txt", tmp_path / "eval.txt"
    src.write_text("0\n")
    ev.write_text("0\n")
    with pytest.raises(ValueError, match="'eval_source' = .*no such file"):
        m.set_source(str(src), str(tmp_path / "missing.txt"))
    with pytest.raises(HgcError):  # file lists with no files are rejected by the reader
        m.set_source(str(src), str(ev))
    with pytest.raises(HgcError):
        m.set_source(source=str(src), eval_source=str(ev))
    with pytest.raises(ValueError, match="list form needs the embedding training cache"):
        m.set_source([str(src)], [str(src)], str(ev))
    with pytest.raises(TypeError, match="'keyset' belongs to the list form"):
        m.set_source(source=str(src), keyset=["k"], eval_source=str(ev))
    with pytest.raises(TypeError, match="missing required argument 'eval_source'"):
        m.set_source(str(src))


def test_etc_model(tmp_path):
    etc = hgc.CreateETC([hgc.TrainPSType_t.Staged], [str(tmp_path / "emb0")])
    m = tiny(new_model(etc=etc, repeat_dataset=False))
    m.compile()
    assert isinstance(m.get_embedding_training_cache(), hgc.EmbeddingTrainingCache)
    [(keys, vectors)] = m.get_incremental_model()
    assert keys.shape == (0,) and vectors.shape == (0, 4)
    files = []
    for name in ("f1.txt", "k1.keyset", "ev.txt"):
        (tmp_path / name).write_text("0\n")
        files.append(str(tmp_path / name))
    with pytest.raises(HgcError):  # the file lists are empty: the reader refuses them
        m.set_source([files[0]], [files[1]], files[2])
    with pytest.raises(ValueError, match="give lists"):
        m.set_source(files[0], files[2])
    two = hgc.CreateETC([hgc.TrainPSType_t.Staged] * 2, ["a", "b"])
    with pytest.raises(ValueError, match=r"'etc.sparse_models' .* one path per embedding table of the model \(1\)"):
        tiny(new_model(etc=two)).compile()


def test_model_constructor_types():
    with pytest.raises(TypeError, match="'solver' must be a hugectr.Solver"):
        hgc.Model({"batchsize": 8}, reader(), hgc.CreateOptimizer())
    with pytest.raises(TypeError, match="'opt_params'"):
        hgc.Model(hgc.CreateSolver(), reader(), "Adam")
    raw = hgc.DataReaderParams(data_reader_type=hgc.DataReaderType_t.Raw, source="t.bin", eval_source="e.bin",
                               check_type=hgc.Check_t.Non)
    with pytest.raises(ValueError, match="Model\\(\\): argument 'reader_params.num_samples' = 0"):
        hgc.Model(hgc.CreateSolver(), raw, hgc.CreateOptimizer())


# -- JSON ---------------------------------------------------------------------------------------------------
def test_graph_json_round_trip(tmp_path):
    m = tiny()
    path = tmp_path / "tiny.json"
    m.graph_to_json(str(path))
    m2 = new_model()
    m2.construct_from_json(str(path), True)
    assert [(n.op, n.inputs, n.outputs, n.types) for n in m2.graph.nodes()] == \
        [(n.op, n.inputs, n.outputs, n.types) for n in m.graph.nodes()]
    assert m2.graph.node("fc1").attrs == m.graph.node("fc1").attrs
    m2.compile()
    m3 = new_model()
    m3.construct_from_json(str(path), include_dense_network=False)
    assert [n.name for n in m3.graph.nodes()] == ["data", "emb"]
    m3.add(hgc.DenseLayer(L.Reshape, ["emb"], ["r"], leading_dim=12))
    m3.add(hgc.DenseLayer(L.InnerProduct, ["r"], ["fc"], num_output=1))
    m3.add(hgc.DenseLayer(L.BinaryCrossEntropyLoss, ["fc", "label"], ["loss"]))
    m3.compile()
    with pytest.raises(GraphError, match="already has layers"):
        m3.construct_from_json(str(path), True)
    with pytest.raises(ValueError, match="'graph_config_file' = .* no such file"):
        new_model().construct_from_json(str(tmp_path / "none.json"), True)
    with pytest.raises(ValueError, match="folder .* does not exist"):
        m.graph_to_json(str(tmp_path / "no" / "dir.json"))
