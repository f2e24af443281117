"""Offline inference: the runtime behind ``hugectr.inference.InferenceModel`` and its parameter server.

* :mod:`~hgc.runtime.inference.runtime`: deploys a model (graph JSON, dense and sparse files) and runs
  predict / evaluate on the executor the training runtime uses;
* :mod:`~hgc.runtime.inference.lookup` (both targets) and :mod:`~hgc.runtime.inference.device_lookup` (cuda):
  the embedding layers, served from the parameter server;
* :mod:`~hgc.runtime.inference.embedding_cache`: the cache of hot rows in front of the server;
* :mod:`~hgc.runtime.inference.parameter_server`: the volatile and persistent tiers and missing keys;
* the databases: :mod:`~hgc.runtime.inference.hash_map_db` (hash_map, parallel_hash_map),
  :mod:`~hgc.runtime.inference.redis_db` (redis_cluster), :mod:`~hgc.runtime.inference.rocksdb_db`
  (rocks_db), on :mod:`~hgc.runtime.inference.database` and :mod:`~hgc.runtime.inference.row_store`.
"""
