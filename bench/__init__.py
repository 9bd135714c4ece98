"""Side-by-side benchmarks of taskmill against dask.distributed (see README.md)."""
