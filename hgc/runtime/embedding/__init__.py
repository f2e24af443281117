"""Embedding tables of the cpu target: key → row hash tables, row storage, combiners, capacity."""
