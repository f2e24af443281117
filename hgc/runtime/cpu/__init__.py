"""The cpu target: executes the optimized graph with the ops' NumPy reference semantics."""
