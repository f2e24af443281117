"""``hugectr.data``: the Data Source API."""

from __future__ import annotations

from hgc.data.data_source import DataSource, DataSourceParams

__all__ = ["DataSource", "DataSourceParams"]
