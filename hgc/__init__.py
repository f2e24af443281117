"""hgc: train and serve HugeCTR models. ``import hgc as hugectr`` runs HugeCTR scripts."""
__version__ = "0.1.0"
