import pytest

import hgc
from hgc.frontend.layers import DENSE_ARGS, ir_value
from hgc.ir.registry import all_ops

# facts §1.1 (model_wrapper.hpp); leading_dim follows the 3.x argument list (1)
DENSE_DEFAULTS = {
    "factor": 1.0, "eps": 1e-5, "gamma_init_type": hgc.Initializer_t.Default,
    "beta_init_type": hgc.Initializer_t.Default, "dropout_rate": 0.5, "elu_alpha": 1.0, "num_output": 1,
    "weight_init_type": hgc.Initializer_t.Default, "bias_init_type": hgc.Initializer_t.Default, "num_layers": 0,
    "leading_dim": 1, "time_step": 0, "batchsize": 1, "SeqLength": 1, "vector_size": 1, "selected": False,
    "selected_slots": [], "ranges": [], "indices": [], "weight_dims": [], "projection_dim": 0, "out_dim": 0,
    "axis": 1, "max_sequence_len_from": 1, "max_sequence_len_to": 1, "num_attention_heads": 1,
    "transpose_b": False, "target_weight_vec": [], "use_regularizer": False,
    "regularizer_type": hgc.Regularizer_t.L1, "lambda": 0.0, "pos_type": hgc.FcPosition_t.Non,
    "act_type": hgc.Activation_t.Relu, "num_outputs": [], "use_bias": True, "activations": [], "biases": [],
    "shape": [], "dim": 0, "index": [],
}


def test_dense_layer_defaults():
    layer = hgc.DenseLayer(layer_type=hgc.Layer_t.ReLU, bottom_names=["x"], top_names=["y"])
    for k, v in DENSE_DEFAULTS.items():
        assert getattr(layer, k) == v, k
    assert layer.compute_config == hgc.DenseLayerComputeConfig(async_wgrad=False, fuse_wb=False)
    assert set(DENSE_DEFAULTS) | {"compute_config"} == set(DENSE_ARGS)


def test_every_layer_type_has_an_op_and_its_attrs_come_from_dense_layer_arguments():
    ops = all_ops()
    derived = {"num_tops"}  # Interaction: from the number of top names
    group_only = {"weight_init_types", "bias_init_types"}  # GroupFusedInnerProduct: made by a pass
    for t in hgc.Layer_t:
        assert t.name in ops, t
        extra = {a.name for a in ops[t.name].attrs} - set(DENSE_ARGS) - derived - group_only
        assert not extra, (t, extra)


def test_lambda_and_values():
    layer = hgc.DenseLayer(hgc.Layer_t.BinaryCrossEntropyLoss, ["p", "label"], ["loss"], use_regularizer=True,
                           regularizer_type=hgc.Regularizer_t.L2, **{"lambda": 0.01})
    assert getattr(layer, "lambda") == 0.01 and layer.args["regularizer_type"] is hgc.Regularizer_t.L2
    s = hgc.DenseLayer(hgc.Layer_t.Slice, ["x"], ["a", "b"], ranges=[[0, 10], (10, 11)])
    assert s.ranges == [(0, 10), (10, 11)] and ir_value(s.ranges) == ((0, 10), (10, 11))
    assert ir_value([hgc.Activation_t.Relu, hgc.Activation_t.Non]) == ("Relu", "Non")


def test_dense_layer_unknown_keyword_names_it():
    with pytest.raises(TypeError, match="'num_outputz'"):
        hgc.DenseLayer(hgc.Layer_t.InnerProduct, ["x"], ["y"], num_outputz=3)


@pytest.mark.parametrize("kwargs, arg, rule", [
    ({"num_output": 2.5}, "num_output", "integer"),
    ({"dropout_rate": "half"}, "dropout_rate", "finite number"),
    ({"weight_init_type": "Gaussian"}, "weight_init_type", "Initializer_t.Default"),
    ({"ranges": [(0, 1, 2)]}, "ranges", r"\(start, end\) integer pairs"),
    ({"weight_dims": [13, "10"]}, "weight_dims", "list of integers"),
    ({"selected": "yes"}, "selected", "True or False"),
    ({"pos_type": "Middle"}, "pos_type", "FcPosition_t.Head"),
    ({"activations": ["Relu", "Tanh"]}, "activations", "Activation_t.Relu"),
    ({"target_weight_vec": [0.5, None]}, "target_weight_vec", "finite numbers"),
    ({"compute_config": {"async_wgrad": True}}, "compute_config", None),
])
def test_dense_layer_rejects(kwargs, arg, rule):
    if rule is None:
        with pytest.raises(TypeError, match=arg):
            hgc.DenseLayer(hgc.Layer_t.InnerProduct, ["x"], ["y"], **kwargs)
        return
    with pytest.raises(ValueError, match=rf"DenseLayer\(\): argument '{arg}' = .* is not allowed: .*{rule}"):
        hgc.DenseLayer(hgc.Layer_t.InnerProduct, ["x"], ["y"], **kwargs)


def test_dense_layer_type_must_be_a_layer():
    with pytest.raises(ValueError, match="'layer_type' .*hugectr.SparseEmbedding"):
        hgc.DenseLayer(hgc.Embedding_t.DistributedSlotSparseEmbeddingHash, ["x"], ["y"])
    with pytest.raises(ValueError, match="'layer_type' .*hugectr.GroupDenseLayer"):
        hgc.DenseLayer(hgc.GroupLayer_t.GroupFusedInnerProduct, ["x"], ["y"])
    with pytest.raises(ValueError, match="'layer_type' = 'Conv2D'"):
        hgc.DenseLayer("Conv2D", ["x"], ["y"])
    with pytest.raises(ValueError, match="'top_names'"):
        hgc.DenseLayer(hgc.Layer_t.ReLU, ["x"], [])
    with pytest.raises(TypeError, match="missing required argument 'top_names'"):
        hgc.DenseLayer(hgc.Layer_t.ReLU, ["x"])


def test_input_forms():
    a = hgc.Input(label_dim=1, label_name="label", dense_dim=13, dense_name="dense",
                  data_reader_sparse_param_array=[hgc.DataReaderSparseParam("data1", 2, False, 26)])
    assert (a.label_dims, a.label_names, a.label_dim, a.label_name) == ([1], ["label"], 1, "label")
    b = hgc.Input(label_dims=[1, 1], label_names=["l1", "l2"], dense_dim=0, dense_name="dense",
                  data_reader_sparse_param_array=[])
    assert (b.label_dims, b.label_name) == ([1, 1], ["l1", "l2"])
    c = hgc.Input(label_dim=[2, 1], label_name=["a", "b"], dense_dim=3, dense_name="d")
    assert c.data_reader_sparse_param_array == []
    with pytest.raises(ValueError, match="'label_name' .* one name per label dim"):
        hgc.Input(label_dim=[1, 1], label_name=["a"], dense_dim=1, dense_name="d")
    with pytest.raises(ValueError, match="'label_name'"):
        hgc.Input(label_dim=2, label_name=["a", "b"], dense_dim=1, dense_name="d")
    with pytest.raises(ValueError, match="'dense_dim' = -1"):
        hgc.Input(label_dim=1, label_name="l", dense_dim=-1, dense_name="d")
    with pytest.raises(TypeError, match="both 'label_dim' and 'label_dims'"):
        hgc.Input(label_dim=1, label_dims=[1], label_name="l", dense_dim=1, dense_name="d")
    with pytest.raises(TypeError, match="'label_weights'"):
        hgc.Input(label_dim=1, label_name="l", dense_dim=1, dense_name="d", label_weights=[1.0])
    with pytest.raises(TypeError, match="DataReaderSparseParam"):
        hgc.Input(label_dim=1, label_name="l", dense_dim=1, dense_name="d", data_reader_sparse_param_array=[("s", 1)])


def test_sparse_embedding():
    opt = hgc.CreateOptimizer(optimizer_type=hgc.Optimizer_t.SGD)
    e = hgc.SparseEmbedding(embedding_type=hgc.Embedding_t.LocalizedSlotSparseEmbeddingHash,
                            embedding_vec_size=16, combiner="mean", sparse_embedding_name="emb", bottom_name="data1",
                            slot_size_array=[10, 20], optimizer=opt)
    assert e.workspace_size_per_gpu_in_mb == 0 and e.hybrid_embedding_param is None
    attrs = e.to_attrs()
    assert attrs["slot_size_array"] == (10, 20) and attrs["optimizer"]["optimizer_type"] == "SGD"
    plain = hgc.SparseEmbedding(hgc.Embedding_t.DistributedSlotSparseEmbeddingHash, 8, 4, "sum", "e", "d")
    assert plain.to_attrs()["optimizer"] is None and plain.slot_size_array == []
    with pytest.raises(ValueError, match="'combiner' = 'max' .* 'sum' or 'mean'"):
        hgc.SparseEmbedding(hgc.Embedding_t.DistributedSlotSparseEmbeddingHash, 8, 4, "max", "e", "d")
    with pytest.raises(ValueError, match="'embedding_vec_size' = 0"):
        hgc.SparseEmbedding(hgc.Embedding_t.DistributedSlotSparseEmbeddingHash, 8, 0, "sum", "e", "d")
    with pytest.raises(ValueError, match="'embedding_type' = .*Layer_t.InnerProduct"):
        hgc.SparseEmbedding(hgc.Layer_t.InnerProduct, 8, 4, "sum", "e", "d")
    with pytest.raises(TypeError, match="'optimizer' must be a hugectr.OptParamsPy"):
        hgc.SparseEmbedding(hgc.Embedding_t.DistributedSlotSparseEmbeddingHash, 8, 4, "sum", "e", "d",
                            optimizer="Adam")
    with pytest.raises(TypeError, match="missing required argument 'combiner'"):
        hgc.SparseEmbedding(embedding_type=hgc.Embedding_t.DistributedSlotSparseEmbeddingHash,
                            embedding_vec_size=4, sparse_embedding_name="e", bottom_name="d")


def test_group_dense_layer():
    g = hgc.GroupDenseLayer(group_layer_type=hgc.GroupLayer_t.GroupFusedInnerProduct, bottom_name=["dense"],
                            top_name_list=["fc1", "fc2", "fc3"], num_outputs=[1024, 512, 256],
                            last_act_type=hgc.Activation_t.Non)
    members = g.members()
    assert [m[2]["pos_type"] for m in members] == ["Head", "Body", "Tail"]
    assert [m[2]["act_type"] for m in members] == ["Relu", "Relu", "Non"]
    assert [m[0] for m in members] == [["dense"], ["fc1"], ["fc2"]]
    assert hgc.GroupDenseLayer(hgc.GroupLayer_t.GroupFusedInnerProduct, ["a", "b"], ["x", "y"], [4, 1]
                               ).last_act_type is hgc.Activation_t.Relu
    with pytest.raises(ValueError, match="at least two layers"):
        hgc.GroupDenseLayer(hgc.GroupLayer_t.GroupFusedInnerProduct, ["a"], ["x"], [4])
    with pytest.raises(ValueError, match="'num_outputs' .* one width per layer"):
        hgc.GroupDenseLayer(hgc.GroupLayer_t.GroupFusedInnerProduct, ["a"], ["x", "y"], [4])
    with pytest.raises(ValueError, match="'bottom_name_list'"):
        hgc.GroupDenseLayer(hgc.GroupLayer_t.GroupFusedInnerProduct, ["a", "b", "c"], ["x", "y"], [4, 1])
    with pytest.raises(ValueError, match="'group_layer_type'"):
        hgc.GroupDenseLayer(hgc.Layer_t.FusedInnerProduct, ["a"], ["x", "y"], [4, 1])
    with pytest.raises(TypeError, match="both 'bottom_name_list' and 'bottom_name'"):
        hgc.GroupDenseLayer(hgc.GroupLayer_t.GroupFusedInnerProduct, ["a"], ["x", "y"], [4, 1], bottom_name=["a"])
