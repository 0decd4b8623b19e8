"""Running cases: the run spec and the per-case function, the books (efficiency.csv, run.json), worker processes,
a Dask cluster, which entries are cases."""
