import pkgutil
import sys
import textwrap

import pytest

import hgc.cli
from hgc.cli import main
from hgc.ir.build import add_node
from hgc.ir.json_io import write_graph_json
from tests.passes._graphs import embedding, mlp, with_input


def graph_json(tmp_path, workspace=1):
    g = with_input(dense_dim=13, sparse=[("keys", 4, 2)], meta={"model_name": "tiny"})
    embedding(g, "DistributedSlotSparseEmbeddingHash", "keys", "emb", 8, workspace=workspace,
              sizes=(1000, 2000, 3000, 4000))
    add_node(g, "Reshape", ["emb"], ["emb2d"], {"leading_dim": 32})
    add_node(g, "Concat", ["dense", "emb2d"], ["cat"], {"axis": 1})
    last = mlp(g, "cat", [16, 8])
    add_node(g, "InnerProduct", [last], ["pred"], {"num_output": 1})
    add_node(g, "BinaryCrossEntropyLoss", ["pred", "label"], ["loss"])
    path = tmp_path / "tiny.json"
    write_graph_json(g, path)
    return path


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    names = [m.name for m in pkgutil.iter_modules(hgc.cli.__path__) if not m.name.startswith("_")]
    assert "compile" in names
    for name in names:
        assert name in out
    with pytest.raises(SystemExit):
        main(["compile", "--help"])
    out = capsys.readouterr().out
    for option in ("--dump-dir", "--target", "--disable-pass", "--stop-after", "-v"):
        assert option in out


def test_compile_graph_json_prints_the_pass_table_and_dumps(tmp_path, capsys):
    path = graph_json(tmp_path)
    rc = main(["compile", str(path), "--dump-dir", str(tmp_path / "d"), "--target", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "FuseInnerProductReLU" in out and "model tiny: 10 nodes in, 7 out" in out
    assert "GroupFusedInnerProduct" in out and "kernel generation" not in out
    files = {p.name for p in (tmp_path / "d").iterdir()}
    assert {"000_Initial.ir.txt", "001_Validate.ir.txt", "008_PlanPrecision.dot", "placement.txt"} <= files
    assert "table emb" in (tmp_path / "d" / "placement.txt").read_text()


def test_cuda_target_says_kernels_are_not_built_but_still_dumps(tmp_path, capsys):
    path = graph_json(tmp_path)
    rc = main(["compile", str(path), "--target", "cuda", "--dump-dir", str(tmp_path / "d")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "hgc does not implement CUDA kernel generation" in out
    assert (tmp_path / "d" / "placement.txt").exists()


def test_disable_stop_and_verbose(tmp_path, capsys):
    path = graph_json(tmp_path)
    rc = main(["compile", str(path), "--target", "cpu", "--disable-pass", "FuseInnerProductReLU",
               "--disable-pass", "dead_code", "--stop-after", "PlanEmbeddingPlacement", "-v"])
    out = capsys.readouterr().out
    assert rc == 0
    table = out.split("# embedding placement")[0]
    assert "FuseInnerProductReLU" not in table and "DeadCodeElimination" not in table
    assert "PlanEmbeddingPlacement" in table and "PlanBuffers" not in table
    assert "GPU 0 (device 0): keys with key % 1 == 0" in out  # -v prints the placement ...
    assert "InnerProduct(cat) -> fc1" in out  # ... and the final IR


def test_errors_are_one_line_with_exit_status_1(tmp_path, capsys):
    path = graph_json(tmp_path)
    assert main(["compile", str(path), "--disable-pass", "Nope"]) == 1
    err = capsys.readouterr().err
    assert "unknown pass 'Nope'; known passes: Validate" in err
    # the table needs 1000 + 2000 + 3000 + 4000 rows of 8 floats + 2 Adam copies (96 bytes each)
    assert main(["compile", str(graph_json(tmp_path, workspace=1)), "--target", "cpu"]) == 0  # 10922 fit
    capsys.readouterr()
    assert main(["compile", str(graph_json(tmp_path, workspace=0.9)), "--target", "cpu"]) == 1  # 9830 fit
    err = capsys.readouterr().err
    assert "embedding table 'emb'" in err and "10000 rows" in err and "9830 rows" in err
    assert main(["compile", str(tmp_path / "missing.py")]) == 1
    assert "no such file" in capsys.readouterr().err


SCRIPT = """
import hgc as hugectr
from sibling_widths import HIDDEN  # a module next to the script, importable as under `python train.py`
solver = hugectr.CreateSolver(max_eval_batches=1, batchsize_eval=64, batchsize=64, lr=0.001,
                              vvgpu=[[0, 1]], repeat_dataset=True)
reader = hugectr.DataReaderParams(data_reader_type=hugectr.DataReaderType_t.Norm,
                                  source=["./file_list.txt"], eval_source="./file_list_test.txt",
                                  check_type=hugectr.Check_t.Sum)
optimizer = hugectr.CreateOptimizer(optimizer_type=hugectr.Optimizer_t.Adam)
model = hugectr.Model(solver, reader, optimizer)
model.add(hugectr.Input(label_dim=1, label_name="label", dense_dim=13, dense_name="dense",
                        data_reader_sparse_param_array=[hugectr.DataReaderSparseParam("data1", 2, False, 26)]))
model.add(hugectr.SparseEmbedding(embedding_type=hugectr.Embedding_t.DistributedSlotSparseEmbeddingHash,
                                  workspace_size_per_gpu_in_mb=8, embedding_vec_size=16, combiner="sum",
                                  sparse_embedding_name="sparse_embedding1", bottom_name="data1",
                                  optimizer=optimizer))
model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Reshape, bottom_names=["sparse_embedding1"],
                             top_names=["reshape1"], leading_dim=416))
model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Concat, bottom_names=["reshape1", "dense"],
                             top_names=["concat1"]))
model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.InnerProduct, bottom_names=["concat1"],
                             top_names=["fc1"], num_output=HIDDEN))
model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.ReLU, bottom_names=["fc1"], top_names=["relu1"]))
model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.InnerProduct, bottom_names=["relu1"],
                             top_names=["fc2"], num_output=1))
model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.BinaryCrossEntropyLoss, bottom_names=["fc2", "label"],
                             top_names=["loss"]))
model.compile()
model.fit(max_iter=10, display=1, eval_interval=5)
"""


def test_compile_a_training_script(tmp_path, capsys, monkeypatch):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    (tmp_path / "sibling_widths.py").write_text("HIDDEN = 24\n")
    monkeypatch.chdir(tmp_path)
    rc = main(["compile", str(script), "--target", "cpu", "--dump-dir", str(tmp_path / "d")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "FuseInnerProductReLU" in out and "2 GPU(s)" in out
    placement = (tmp_path / "d" / "placement.txt").read_text()
    assert "table sparse_embedding1" in placement and "GPU 1 (device 1)" in placement
    assert "relu1: float32(B, 24)" in (tmp_path / "d" / "003_FuseInnerProductReLU.ir.txt").read_text()
    assert str(tmp_path) not in sys.path  # the script's folder is on the path only while it runs
    sys.modules.pop("sibling_widths", None)
