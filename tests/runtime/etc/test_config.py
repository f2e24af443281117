"""Training-cache settings: CreateETC's result, Cached-PS configurations (objects or JSON files), and checks."""
from __future__ import annotations

import json
import types

import pytest

import hgc
from hgc.runtime.etc.config import CacheSettings, EtcConfig


def test_from_create_etc_with_json_cache_configs(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"num_blocks": 3, "target_hit_rate": 0.5, "max_num_evict": 2}))
    b.write_text(json.dumps({"num_blocks": 1, "target_hit_rate": 1, "max_num_evict": 0}))
    etc = hgc.CreateETC(ps_types=[hgc.TrainPSType_t.Cached, hgc.TrainPSType_t.Staged, hgc.TrainPSType_t.Cached],
                        sparse_models=["m0", "m1", "m2"], local_paths=[str(tmp_path)],
                        hcache_configs=[str(a), str(b)])
    cfg = EtcConfig.from_params(etc)
    assert cfg.ps_types == ("Cached", "Staged", "Cached") and cfg.sparse_models == ("m0", "m1", "m2")
    assert cfg.cache_for(0) == CacheSettings(3, 0.5, 2) and cfg.cache_for(2) == CacheSettings(1, 1.0, 0)
    assert cfg.local_path(0) == str(tmp_path) and cfg.local_path(5) == str(tmp_path)


def test_one_cache_config_serves_every_cached_table_and_objects_work():
    hc = types.SimpleNamespace(num_blocks=6, target_hit_rate=0.6, max_num_evict=3)  # CreateHMemCache's fields
    params = types.SimpleNamespace(ps_types=["Cached", "Cached"], sparse_models=["a", "b"], local_paths=["/tmp"],
                                   hmem_cache_configs=[hc])
    cfg = EtcConfig.from_params(params)
    assert cfg.cache_for(0) == cfg.cache_for(1) == CacheSettings(6, 0.6, 3)
    cxx = types.SimpleNamespace(num_cached_pass=2, target_hit_rate=0.25, max_num_evict=1)
    assert CacheSettings.from_entry(cxx) == CacheSettings(2, 0.25, 1)


def test_staged_default_for_the_model_prefetcher():
    cfg = EtcConfig.staged(3)
    assert cfg.ps_types == ("Staged",) * 3 and cfg.sparse_models == ("", "", "")


@pytest.mark.parametrize("doc,match", [
    ({"num_blocks": 0, "target_hit_rate": 0.5, "max_num_evict": 1}, "num_blocks=0"),
    ({"num_blocks": 2, "target_hit_rate": 1.5, "max_num_evict": 1}, "target_hit_rate=1.5"),
    ({"num_blocks": 2, "target_hit_rate": 0.5, "max_num_evict": -1}, "max_num_evict=-1"),
    ({"num_blocks": 2, "target_hit_rate": 0.5}, "needs an object with the keys"),
])
def test_bad_cache_configs(tmp_path, doc, match):
    p = tmp_path / "hc.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=match):
        CacheSettings.from_entry(str(p))


def test_bad_files_and_entries(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        CacheSettings.from_entry(str(tmp_path / "missing.json"))
    (tmp_path / "x.json").write_text("{nope")
    with pytest.raises(ValueError, match="not valid JSON"):
        CacheSettings.from_entry(str(tmp_path / "x.json"))
    with pytest.raises(ValueError, match="must be a CreateHMemCache"):
        CacheSettings.from_entry(42)


def test_config_rules():
    with pytest.raises(ValueError, match="ps_types entry 'Disk'"):
        EtcConfig(("Disk",), ("a",))
    with pytest.raises(ValueError, match="sparse_models has 1 entries, ps_types 2"):
        EtcConfig(("Staged", "Staged"), ("a",))
    with pytest.raises(ValueError, match="local_paths is required"):
        EtcConfig(("Cached",), ("a",), (), (CacheSettings(1, 0.5, 1),))
    with pytest.raises(ValueError, match="hcache_configs has 2 entries"):
        EtcConfig(("Cached", "Staged"), ("a", "b"), ("/tmp",), (CacheSettings(1, 0.5, 1),) * 2)
