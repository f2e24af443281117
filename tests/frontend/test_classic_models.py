"""The four classic models build as the API documents them, print their summary, compile and round-trip
through graph JSON."""
import pytest

import hgc
from hgc.config import config
from tests.frontend.classic_models import CLASSIC_MODELS


@pytest.mark.parametrize("name", list(CLASSIC_MODELS))
def test_builds_prints_compiles(name, capsys):
    import hugectr

    m = CLASSIC_MODELS[name](hugectr=hugectr)
    with config.patch(target="cpu"):
        m.summary()
        m.compile()
    out = capsys.readouterr().out
    assert "Model Summary (target: cpu)" in out and "BinaryCrossEntropyLoss" in out
    for n in m.graph.nodes():
        assert n.name in out
    assert m.compiled.graph.find("BinaryCrossEntropyLoss")


@pytest.mark.parametrize("name", list(CLASSIC_MODELS))
def test_json_round_trip(name, tmp_path):
    m = CLASSIC_MODELS[name]()
    path = tmp_path / f"{name}.json"
    m.graph_to_json(str(path))
    again = hgc.Model(m.solver, m.reader_params, m.opt_params)
    again.construct_from_json(str(path), include_dense_network=True)
    assert again.graph.nodes() == m.graph.nodes()


def test_expected_fusions():
    ops = {}
    for name, build in CLASSIC_MODELS.items():
        m = build()
        m.compile()
        ops[name] = [n.op for n in m.compiled.graph.nodes()]
    assert ops["wdl"].count("FusedInnerProduct") == 2 and "ReLU" not in ops["wdl"]
    assert ops["dlrm"].count("GroupFusedInnerProduct") == 2 and "FusedInnerProduct" not in ops["dlrm"]
    assert "MultiCross" in ops["dcn"] and "FmOrder2" in ops["deepfm"]
