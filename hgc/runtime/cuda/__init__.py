"""The cuda target: runs an ExecutablePlan with CuPy (generated kernels, cuBLAS GEMMs, device embeddings)."""
