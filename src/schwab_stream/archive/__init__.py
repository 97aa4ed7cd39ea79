"""`schwab-stream archive`: the event streams into Parquet files, exactly once (docs/archive.md).

The rules (what goes in which file, when a file rolls, gaps in `seq`, file names) are sans-I/O
(`rows`, `roll`, `gaps`); Redis (`source`, `claims`) and the files (`files`, `tables`) are the
edges, and `runner` drives them. Only this package and `cli/archive.py` import pyarrow.
"""
