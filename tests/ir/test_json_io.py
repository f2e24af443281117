"""HugeCTR graph JSON both ways, the 2.x layout, the 2.3 model configuration, and error messages."""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from hgc.errors import GraphError, ShapeError
from hgc.ir.build import add_node
from hgc.ir.graph import Graph
from hgc.ir.json_io import (OPTIMIZER_DEFAULTS, LegacyConfig, dump_graph_json, load_graph_json,
                            load_legacy_config, optimizer_json, write_graph_json)
from hgc.ir.node import Attrs
from hgc.ir.types import B, TensorType
from hgc.ir.verify import verify

FIXTURES = Path(__file__).parent / "fixtures"


# -- graphs -------------------------------------------------------------------------------------
ADAM = Attrs(OPTIMIZER_DEFAULTS)
SGD_LOCAL = Attrs({**OPTIMIZER_DEFAULTS, "optimizer_type": "SGD", "update_type": "Local",
                   "atomic_update": False})


def wdl_graph(deep_opt: Attrs | None = None, wide_opt: Attrs | None = SGD_LOCAL, meta_opt: bool = True,
              key_dtype: str = "int64") -> Graph:
    meta: dict[str, Any] = {"model_name": "wdl"}
    if meta_opt:
        meta["optimizer"] = ADAM
    g = Graph(meta)
    sparse = (Attrs(name="wide_data", slot_num=1, nnz_per_slot=(2,), is_fixed_length=False),
              Attrs(name="deep_data", slot_num=26, nnz_per_slot=(1,) * 25 + (3,), is_fixed_length=True))
    add_node(g, "Input", [], ["label", "dense", "wide_data", "deep_data"],
             {"label_dims": (1,), "label_names": ("label",), "dense_dim": 13, "dense_name": "dense",
              "sparse": sparse, "key_dtype": key_dtype}, name="data")
    add_node(g, "DistributedSlotSparseEmbeddingHash", ["wide_data"], ["sparse_embedding2"],
             {"workspace_size_per_gpu_in_mb": 23, "embedding_vec_size": 1, "combiner": "sum",
              "optimizer": wide_opt}, name="sparse_embedding2")
    add_node(g, "DistributedSlotSparseEmbeddingHash", ["deep_data"], ["sparse_embedding1"],
             {"workspace_size_per_gpu_in_mb": 358, "embedding_vec_size": 16, "combiner": "mean",
              "optimizer": deep_opt}, name="sparse_embedding1")
    add_node(g, "Reshape", ["sparse_embedding1"], ["reshape1"], {"leading_dim": 416})
    add_node(g, "Reshape", ["sparse_embedding2"], ["reshape2"], {"leading_dim": 1})
    add_node(g, "Concat", ["reshape1", "dense"], ["concat1"])
    add_node(g, "InnerProduct", ["concat1"], ["fc1"], {"num_output": 1024, "bias_init_type": "Zero"})
    add_node(g, "ReLU", ["fc1"], ["relu1"])
    add_node(g, "Dropout", ["relu1"], ["dropout1"], {"dropout_rate": 0.1})
    add_node(g, "InnerProduct", ["dropout1"], ["fc2"], {"num_output": 1})
    add_node(g, "Add", ["fc2", "reshape2"], ["add1"])
    add_node(g, "BinaryCrossEntropyLoss", ["add1", "label"], ["loss"])
    return g


def test_dump_layout() -> None:
    d = dump_graph_json(wdl_graph())
    assert list(d) == ["layers", "model_name"] and d["model_name"] == "wdl"
    layers = d["layers"]
    assert layers[0] == {
        "type": "Data", "label": {"top": "label", "label_dim": 1}, "dense": {"top": "dense", "dense_dim": 13},
        "sparse": [{"top": "wide_data", "type": "DistributedSlot", "nnz_per_slot": [2],
                    "is_fixed_length": False, "slot_num": 1},
                   {"top": "deep_data", "type": "DistributedSlot", "nnz_per_slot": [1] * 25 + [3],
                    "is_fixed_length": True, "slot_num": 26}]}
    wide, deep = layers[1], layers[2]
    assert [wide["type"], wide["bottom"], wide["top"]] == ["DistributedSlotSparseEmbeddingHash", "wide_data",
                                                           "sparse_embedding2"]
    assert wide["optimizer"] == {"type": "SGD", "update_type": "Local",
                                 "sgd_hparam": {"atomic_update": False}}
    assert deep["optimizer"] == {"type": "Adam", "update_type": "Global",
                                 "adam_hparam": {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-7}}
    hp = deep["sparse_embedding_hparam"]
    assert (hp["workspace_size_per_gpu_in_mb"], hp["embedding_vec_size"], hp["combiner"]) == (358, 16, "mean")
    if "max_vocabulary_size_global" in hp:  # sized with the optimizer in effect (SGD keeps no state)
        assert hp["max_vocabulary_size_global"] == 358 * 2**20 // (3 * 4 * 16)
        assert wide["sparse_embedding_hparam"]["max_vocabulary_size_global"] == 23 * 2**20 // (1 * 4 * 1)
    assert [(x["type"], x["bottom"], x["top"]) for x in layers[3:]] == [
        ("Reshape", "sparse_embedding1", "reshape1"), ("Reshape", "sparse_embedding2", "reshape2"),
        ("Concat", ["reshape1", "dense"], "concat1"), ("InnerProduct", "concat1", "fc1"),
        ("ReLU", "fc1", "relu1"), ("Dropout", "relu1", "dropout1"), ("InnerProduct", "dropout1", "fc2"),
        ("Add", ["fc2", "reshape2"], "add1"),
        ("BinaryCrossEntropyLoss", ["add1", "label"], "loss")]
    assert layers[3]["leading_dim"] == 416
    assert layers[6]["fc_param"] == {"num_output": 1024, "bias_init": "Zero"}
    assert layers[7] == {"type": "ReLU", "bottom": "fc1", "top": "relu1"}
    assert layers[8]["rate"] == 0.1
    json.dumps(d)  # plain data only


def test_multi_label_and_no_model_name() -> None:
    g = Graph()
    add_node(g, "Input", [], ["click", "buy", "dense"],
             {"label_dims": (1, 2), "label_names": ("click", "buy"), "dense_dim": 4, "dense_name": "dense",
              "sparse": (), "key_dtype": "uint32"}, name="data")
    add_node(g, "InnerProduct", ["dense"], ["fc"], {"num_output": 3})
    d = dump_graph_json(g)
    assert "model_name" not in d
    assert d["layers"][0]["label"] == {"top": ["click", "buy"], "label_dim": [1, 2]}
    assert load_graph_json(d) == g


def test_optimizer_blocks() -> None:
    def block(**kw: Any) -> dict[str, Any]:
        return optimizer_json(Attrs({**OPTIMIZER_DEFAULTS, **kw}))

    assert block(optimizer_type="AdaGrad", initial_accu_value=0.1, epsilon=1e-6) == {
        "type": "AdaGrad", "update_type": "Global",
        "adagrad_hparam": {"initial_accu_value": 0.1, "epsilon": 1e-6}}
    assert block(optimizer_type="Adagrad")["type"] == "AdaGrad"
    momentum = block(optimizer_type="MomentumSGD", momentum_factor=0.9)
    assert momentum["momentum_sgd_hparam"] == {"momentum_factor": 0.9}
    nesterov = block(optimizer_type="Nesterov", momentum_factor=0.5)
    assert nesterov["nesterov_hparam"] == {"momentum_factor": 0.5}
    assert block(optimizer_type="Ftrl", beta=0.5, lambda1=0.1, lambda2=0.2)["ftrl_hparam"] == {
        "beta": 0.5, "lambda1": 0.1, "lambda2": 0.2}
    assert block(optimizer_type="RMSProp", beta=0.9, epsilon=1e-6)["rmsprop_hparam"] == {"beta": 0.9,
                                                                                        "epsilon": 1e-6}
    with pytest.raises(GraphError, match=r"optimizer_type.*must be one of.*\"RMSprop\""):
        block(optimizer_type="RMSprop")
    with pytest.raises(GraphError, match=r"'update_type' must be one of .*, got 'Lazy'"):
        block(update_type="Lazy")


def test_embedding_without_any_optimizer_has_no_block() -> None:
    d = dump_graph_json(wdl_graph(meta_opt=False))
    assert "optimizer" not in d["layers"][2]
    back = load_graph_json(d, key_dtype="int64")
    assert back.node("sparse_embedding1").attrs["optimizer"] is None


# -- round trips --------------------------------------------------------------------------------
def test_round_trip_explicit_optimizers() -> None:
    g = wdl_graph(deep_opt=ADAM, meta_opt=False)
    back = load_graph_json(dump_graph_json(g), key_dtype="int64")
    assert back == g
    verify(back)


def test_round_trip_model_optimizer_becomes_explicit() -> None:
    g = wdl_graph(deep_opt=None)
    back = load_graph_json(dump_graph_json(g), key_dtype="int64")
    assert back.meta == {"model_name": "wdl"}
    assert back.node("sparse_embedding1").attrs["optimizer"] == ADAM
    assert back == wdl_graph(deep_opt=ADAM, meta_opt=False)
    assert dump_graph_json(back) == dump_graph_json(g)


def test_key_dtype_default_and_override() -> None:
    d = dump_graph_json(wdl_graph())
    assert load_graph_json(d).tensor_type("deep_data") == TensorType((B, 26, 3), "uint32", True)
    wide64 = load_graph_json(d, key_dtype="int64")
    assert wide64.tensor_type("deep_data") == TensorType((B, 26, 3), "int64", True)
    with pytest.raises(ValueError, match=r"key_dtype = 'int32' is not allowed: must be None or one of"):
        load_graph_json(d, key_dtype="int32")


def test_write_is_indented_and_atomic(tmp_path: Path) -> None:
    g = wdl_graph()
    path = tmp_path / "wdl.json"
    write_graph_json(g, path)
    text = path.read_text()
    assert text.startswith('{\n  "layers": [\n    {\n      "type": "Data",')
    assert json.loads(text) == dump_graph_json(g)
    assert load_graph_json(path, key_dtype="int64") == load_graph_json(str(path), key_dtype="int64")
    assert load_graph_json(text, key_dtype="int64") == load_graph_json(path, key_dtype="int64")
    # a failing write leaves the old file and no temporary behind
    bad = wdl_graph()
    bad.meta = bad.meta.replace(model_name="broken", optimizer=Attrs({**ADAM, "optimizer_type": "Bogus"}))
    with pytest.raises(GraphError, match="Bogus"):
        write_graph_json(bad, path)
    assert path.read_text() == text
    assert os.listdir(tmp_path) == ["wdl.json"]
    write_graph_json(wdl_graph(deep_opt=SGD_LOCAL), path)
    assert json.loads(path.read_text())["layers"][2]["optimizer"]["type"] == "SGD"
    assert os.listdir(tmp_path) == ["wdl.json"]


def test_include_dense_network_false() -> None:
    g = load_graph_json(dump_graph_json(wdl_graph()), include_dense_network=False)
    assert [n.name for n in g.nodes()] == ["data", "sparse_embedding2", "sparse_embedding1"]


def test_hugectr_spellings() -> None:
    d = dump_graph_json(wdl_graph(deep_opt=ADAM, meta_opt=False))
    d["layers"][1]["bottom"] = ["wide_data"]  # one-element lists where names are expected
    d["layers"][1]["top"] = ["sparse_embedding2"]
    d["layers"][6]["bottom"] = ["concat1"]
    d["layers"][0]["sparse"][0]["nnz_per_slot"] = 2  # an int stands for every slot
    del d["layers"][0]["sparse"][0]["is_fixed_length"]
    d["layers"][1]["optimizer"]["type"] = "SGD"
    d["layers"][5]["bottom"] = ["reshape1", "dense"]
    assert load_graph_json(d, key_dtype="int64") == wdl_graph(deep_opt=ADAM, meta_opt=False)


# -- 2.x layout ---------------------------------------------------------------------------------
def legacy_dict() -> dict[str, Any]:
    return json.loads((FIXTURES / "wdl_2.3.json").read_text())


def test_legacy_graph_json() -> None:
    g = load_graph_json(legacy_dict())
    assert g.tensor_type("deep_data") == TensorType((B, 26, 30), "int64", True)  # solver.input_key_type I64
    data = g.node("data").attrs
    assert data["sparse"][0] == Attrs(name="wide_data", slot_num=1, nnz_per_slot=(30,), is_fixed_length=False)
    emb = g.node("sparse_embedding1").attrs
    # 2,322,444 rows x 16 floats x (1 + 2 Adam states) x 4 bytes = 425.3 MB -> 426
    assert (emb["workspace_size_per_gpu_in_mb"], emb["combiner"], emb["optimizer"]) == (426, "sum", None)
    assert g.node("sparse_embedding2").attrs["workspace_size_per_gpu_in_mb"] == 27
    assert g.meta["optimizer"] == ADAM
    assert g.tensor_type("concat1") == TensorType((B, 429))
    assert g.tensor_type("add1") == TensorType((B, 1))
    verify(g)


def test_legacy_max_nnz_combiner_and_workspace_by_optimizer() -> None:
    d = legacy_dict()
    d["layers"][0]["sparse"][1]["max_nnz"] = 1
    d["layers"][2]["sparse_embedding_hparam"]["combiner"] = 1
    d["optimizer"] = {"type": "SGD", "update_type": "Local", "sgd_hparam": {"learning_rate": 0.1}}
    g = load_graph_json(d)
    assert g.tensor_type("deep_data").shape == (B, 26, 1)
    emb = g.node("sparse_embedding1").attrs
    assert (emb["combiner"], emb["workspace_size_per_gpu_in_mb"]) == ("mean", 142)  # SGD keeps no state
    d["layers"][2]["optimizer"] = {"type": "Adam", "update_type": "LazyGlobal", "adam_hparam": {}}
    lazy = load_graph_json(d).node("sparse_embedding1").attrs
    assert lazy["workspace_size_per_gpu_in_mb"] == 568  # 567.0005 rounded up


def test_load_legacy_config() -> None:
    cfg = load_legacy_config(FIXTURES / "wdl_2.3.json")
    assert isinstance(cfg, LegacyConfig)
    assert cfg.solver["batchsize"] == 4096 and cfg.solver["eval_metrics"] == ["AUC:0.8025"]
    assert cfg.optimizer == {**OPTIMIZER_DEFAULTS, "learning_rate": 0.001}
    assert cfg.reader == {"format": "Norm", "source": "./wdl_data_hugectr/file_list.txt",
                          "eval_source": "./wdl_data_hugectr/file_list_test.txt", "check": "Sum"}
    assert cfg.graph == load_graph_json(FIXTURES / "wdl_2.3.json")
    assert [n.op for n in cfg.graph.nodes()][-3:] == ["InnerProduct", "Add", "BinaryCrossEntropyLoss"]
    assert len(cfg.graph) == 15
    with pytest.raises(AttributeError):
        cfg.solver = {}  # type: ignore[misc]


def test_load_legacy_config_sgd_schedule_and_key_override(tmp_path: Path) -> None:
    d = legacy_dict()
    del d["solver"]
    d["optimizer"] = {"type": "SGD", "update_type": "Local",
                      "sgd_hparam": {"learning_rate": 24.0, "warmup_steps": 8000, "decay_start": 48000,
                                     "decay_steps": 24000, "decay_power": 2.0, "end_lr": 0.0,
                                     "atomic_update": True}}
    path = tmp_path / "dlrm.json"
    path.write_text(json.dumps(d))
    cfg = load_legacy_config(path, key_dtype="uint32")
    assert cfg.solver == {}
    assert cfg.optimizer["learning_rate"] == 24.0 and cfg.optimizer["warmup_steps"] == 8000
    assert cfg.optimizer["decay_power"] == 2.0 and cfg.optimizer["optimizer_type"] == "SGD"
    assert cfg.graph.tensor_type("wide_data").dtype == "uint32"


# -- real-model JSON (all ops present) ----------------------------------------------------------
def test_dlrm_graph_json() -> None:
    raw = json.loads((FIXTURES / "dlrm_graph.json").read_text())
    g = load_graph_json(FIXTURES / "dlrm_graph.json", key_dtype="int64")
    assert g.meta == {"model_name": "dlrm"}
    assert g.tensor_type("sparse_embedding1") == TensorType((B, 26, 16))
    assert g.tensor_type("interaction1") == TensorType((B, 16 + 27 * 26 // 2 + 1))
    assert g.node("sparse_embedding1").attrs["optimizer"]["optimizer_type"] == "SGD"
    assert g.node("sparse_embedding1").attrs["slot_size_array"][:3] == (39884, 39043, 17289)
    verify(g)
    out = dump_graph_json(g)
    assert out["model_name"] == "dlrm"
    assert out["layers"][0] == raw["layers"][0]
    assert out["layers"][2:] == raw["layers"][2:]
    emb, raw_emb = out["layers"][1], raw["layers"][1]
    assert {k: emb[k] for k in ("type", "bottom", "top", "optimizer")} == \
        {k: raw_emb[k] for k in ("type", "bottom", "top", "optimizer")}
    assert raw_emb["sparse_embedding_hparam"].items() <= emb["sparse_embedding_hparam"].items()
    assert load_graph_json(out, key_dtype="int64") == g


# -- errors -------------------------------------------------------------------------------------
def broken(edit: Any) -> dict[str, Any]:
    d = copy.deepcopy(legacy_dict())
    edit(d)
    return d


def error(source: Any, cls: type[Exception] = GraphError) -> str:
    with pytest.raises(cls) as info:
        load_graph_json(source)
    return str(info.value)


@pytest.mark.parametrize("edit, parts", [
    (lambda d: d["layers"][6].pop("fc_param"), ["layer 6 (InnerProduct 'fc1')", "'fc_param' is missing"]),
    (lambda d: d["layers"][6]["fc_param"].pop("num_output"),
     ["layer 6 (InnerProduct 'fc1')", "'num_output'"]),
    (lambda d: d["layers"][0]["label"].update(label_dim="one"),
     ["layer 0 (Data)", "key 'label.label_dim' must be an integer >= 1", '"one"']),
    (lambda d: d["layers"][0]["label"].update(top=["a", "b"]),
     ["layer 0 (Data)", "'label.label_dim' must be a list of 2 integers"]),
    (lambda d: d["layers"][0].pop("dense"), ["layer 0 (Data)", "key 'dense' is missing"]),
    (lambda d: d["layers"][0]["sparse"][1].pop("slot_num"),
     ["layer 0 (Data)", "'sparse[1].slot_num' is missing"]),
    (lambda d: d["layers"][0]["sparse"][1].pop("max_feature_num_per_sample"),
     ["layer 0 (Data)", "'sparse[1].nnz_per_slot' is missing"]),
    (lambda d: d["layers"][0]["sparse"][0].update(nnz_per_slot=[1, 2]),
     ["'sparse[0].nnz_per_slot' must have slot_num = 1 entries, got 2"]),
    (lambda d: d["layers"][0]["sparse"][0].update(type="Weird"), ["'sparse[0].type' must be one of"]),
    (lambda d: d["layers"][0].update(type="Input"),
     ["layer 0 (Input)", "'type' of layer 0 must be \"Data\""]),
    (lambda d: d["layers"].insert(3, {"type": "Data"}),
     ["layer 3 (Data)", "may only be the type of layer 0"]),
    (lambda d: d["layers"][3].update(type="Reshap"),
     ["layer 3 (Reshap 'reshape1')", "unknown layer type 'Reshap'"]),
    (lambda d: d["layers"][3].pop("bottom"), ["layer 3 (Reshape 'reshape1')", "key 'bottom' is missing"]),
    (lambda d: d["layers"][3].update(bottom=7),
     ["layer 3 (Reshape 'reshape1')", "'bottom' must be a tensor name"]),
    (lambda d: d["layers"][5].update(bottom=["reshape1", "nowhere"]),
     ["layer 5 (Concat 'concat1')", "bottom tensor 'nowhere' is not produced"]),
    (lambda d: d["layers"][1].update(bottom=["wide_data", "deep_data"]),
     ["layer 1 (DistributedSlotSparseEmbeddingHash 'sparse_embedding2')", "'bottom' must name exactly one"]),
    (lambda d: d["layers"][2]["sparse_embedding_hparam"].pop("embedding_vec_size"),
     ["layer 2 (DistributedSlotSparseEmbeddingHash 'sparse_embedding1')",
      "'sparse_embedding_hparam.embedding_vec_size' is missing"]),
    (lambda d: d["layers"][2]["sparse_embedding_hparam"].update(combiner=2),
     ["layer 2", "'sparse_embedding_hparam.combiner' must be \"sum\", \"mean\", 0 (sum) or 1 (mean), got 2"]),
    (lambda d: d["layers"][2].update(optimizer={"type": "Adamax"}),
     ["layer 2", "'optimizer.type' must be one of", '"Adamax"']),
    (lambda d: d["layers"][2].update(optimizer={"type": "Adam", "update_type": "Sometimes"}),
     ["layer 2", "'optimizer.update_type' must be one of"]),
    (lambda d: d["layers"][2].update(optimizer={"type": "MomentumSGD", "update_type": "LazyGlobal"}),
     ["layer 2", "'optimizer.update_type' \"LazyGlobal\" works only with the Adam optimizer, got type "
      "\"MomentumSGD\""]),
    (lambda d: d["optimizer"].update(type="SGD", update_type="LazyGlobal"),
     ["<dict>: key 'optimizer.update_type' \"LazyGlobal\" works only with the Adam optimizer, "
      "got type \"SGD\""]),
    (lambda d: d["layers"][2].update(optimizer={"type": "Adam", "adam_hparam": {"beta1": "x"}}),
     ["layer 2", "'optimizer.adam_hparam.beta1' must be a number"]),
    (lambda d: d["optimizer"].pop("type"), ["<dict>: key 'optimizer.type' is missing"]),
    (lambda d: d["solver"].update(input_key_type="I16"), ["'solver.input_key_type' must be one of"]),
    (lambda d: d.pop("layers"), ["<dict>: key 'layers' must be a non-empty list", "got nothing"]),
    (lambda d: d.update(layers=[]), ["key 'layers' must be a non-empty list", "got []"]),
    (lambda d: d.update(model_name=3), ["key 'model_name' must be a string"]),
])
def test_errors_name_layer_and_key(edit: Any, parts: list[str]) -> None:
    msg = error(broken(edit))
    assert msg.startswith("<dict>"), msg
    for p in parts:
        assert p in msg, msg


def test_shape_errors_stay_shape_errors() -> None:
    d = broken(lambda d: d["layers"][3].update(leading_dim=417))
    msg = error(d, ShapeError)
    assert msg.startswith("<dict>: layer 3 (Reshape 'reshape1'): ") and "417" in msg


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"layers": [\n  {"type": "Data",}\n]}')
    msg = error(bad)
    assert msg.startswith(f"{bad}: not valid JSON") and "line 2" in msg
    d = broken(lambda d: d["layers"][6].pop("fc_param"))
    path = tmp_path / "model.json"
    path.write_text(json.dumps(d))
    assert error(path).startswith(f"{path}: layer 6 (InnerProduct 'fc1'): key 'fc_param' is missing")
    assert error(json.dumps(d)).startswith("<string>: layer 6")
    listed = tmp_path / "list.json"
    listed.write_text("[1]")
    assert error(listed) == f"{listed}: the top level must be a JSON object, got list"
    with pytest.raises(GraphError, match=r"model.json: section 'optimizer' is missing"):
        path.write_text(json.dumps({k: v for k, v in d.items() if k != "optimizer"}))
        load_legacy_config(path)
    with pytest.raises(FileNotFoundError):
        load_graph_json(tmp_path / "missing.json")


def test_dump_needs_one_input() -> None:
    g = wdl_graph()
    g2 = Graph()
    for n in g.nodes():
        g2.add(n)
    g2.add(g.node("data").replace(name="data2", outputs=("l2", "d2", "w2", "p2")))
    with pytest.raises(GraphError, match=r"exactly one Input node, the graph has 2: \['data', 'data2'\]"):
        dump_graph_json(g2)
    with pytest.raises(GraphError, match="exactly one Input node, the graph has 0"):
        dump_graph_json(Graph())


def test_dcn_multitask_round_trip() -> None:
    """Dense-layer JSON fields: MultiCross projection_dim, BatchNorm, Slice, a regularized loss."""
    g = Graph({"model_name": "dcn_mt", "optimizer": ADAM})
    add_node(g, "Input", [], ["label", "dense", "data1"],
             {"label_dims": (2,), "label_names": ("label",), "dense_dim": 13, "dense_name": "dense",
              "sparse": (Attrs(name="data1", slot_num=26, nnz_per_slot=(2,) * 26, is_fixed_length=False),),
              "key_dtype": "int64"}, name="data")
    add_node(g, "LocalizedSlotSparseEmbeddingHash", ["data1"], ["emb"],
             {"workspace_size_per_gpu_in_mb": 61, "embedding_vec_size": 9, "combiner": "mean",
              "slot_size_array": tuple(range(100, 126)), "optimizer": None}, name="emb")
    add_node(g, "Reshape", ["emb"], ["flat"], {"leading_dim": 234})
    add_node(g, "Concat", ["flat", "dense"], ["cat"])
    add_node(g, "Slice", ["cat"], ["cross_in", "deep_in"], {"ranges": [(0, 247), (0, 247)]})
    add_node(g, "MultiCross", ["cross_in"], ["cross"], {"num_layers": 3, "projection_dim": 5})
    add_node(g, "InnerProduct", ["deep_in"], ["fc1"], {"num_output": 37, "weight_init_type": "XavierNorm"})
    add_node(g, "BatchNorm", ["fc1"], ["bn1"], {"factor": 0.9, "eps": 1e-3})
    add_node(g, "ReLU", ["bn1"], ["relu1"])
    add_node(g, "Concat", ["cross", "relu1"], ["cat2"])
    add_node(g, "InnerProduct", ["cat2"], ["out"], {"num_output": 2})
    add_node(g, "MultiCrossEntropyLoss", ["out", "label"], ["loss"],
             {"target_weight_vec": (0.25, 0.75), "use_regularizer": True, "regularizer_type": "L2",
              "lambda": 1e-4})
    d = dump_graph_json(g)
    by_top = {x["top"] if isinstance(x["top"], str) else x["top"][0]: x for x in d["layers"][1:]}
    assert by_top["emb"]["optimizer"]["type"] == "Adam"
    assert by_top["emb"]["sparse_embedding_hparam"]["slot_size_array"] == list(range(100, 126))
    assert by_top["cross_in"]["ranges"] == [[0, 247], [0, 247]] and by_top["cross_in"]["top"] == ["cross_in",
                                                                                                   "deep_in"]
    assert by_top["loss"]["target_weight"] == [0.25, 0.75] and by_top["loss"]["regularizer"] == "L2"
    assert by_top["loss"]["lambda"] == 1e-4
    back = load_graph_json(json.loads(json.dumps(d)), key_dtype="int64")
    assert back.node("cross").attrs["projection_dim"] == 5
    expected = g.copy()
    expected.meta = Attrs(model_name="dcn_mt")
    expected.replace(["emb"], [g.node("emb").replace(attrs=g.node("emb").attrs.replace(optimizer=ADAM))])
    assert back == expected
    verify(back)
