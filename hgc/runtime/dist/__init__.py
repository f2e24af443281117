"""Several GPUs and MPI ranks: topology from ``vvgpu``, communicators (in-process, MPI, NCCL), model-parallel
embedding shards with their exchanges, data-parallel dense layers, and checkpoints that move between GPU
counts. ``parallel.wrap_executor`` plugs all of it into the Trainer; the placement plan decides, this
package executes.
"""
