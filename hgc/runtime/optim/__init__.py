"""Optimizers of the cpu target: dense (whole weight arrays) and sparse (embedding rows, per Update_t)."""
