"""``hugectr.tools``: the synthetic data generator and the Criteo converter."""

from __future__ import annotations

from hgc.tools.criteo import CriteoConversion, convert_criteo
from hgc.tools.data_generator import DataGenerator, DataGeneratorParams

__all__ = ["CriteoConversion", "DataGenerator", "DataGeneratorParams", "convert_criteo"]
