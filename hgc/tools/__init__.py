"""``hugectr.tools``: the synthetic data generator, the Criteo converter and the UCI Adult converter."""

from __future__ import annotations

from hgc.tools.adult import AdultConversion, convert_adult
from hgc.tools.criteo import CriteoConversion, convert_criteo
from hgc.tools.data_generator import DataGenerator, DataGeneratorParams

__all__ = ["AdultConversion", "CriteoConversion", "DataGenerator", "DataGeneratorParams", "convert_adult",
           "convert_criteo"]
