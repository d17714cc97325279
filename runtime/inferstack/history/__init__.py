"""A deployment's history for charts: downsampled time series kept in the store (`series.py` is pure,
`table.py` reads and writes it)."""
