"""Task functions shipped to the workers of both systems.

They live in an importable module (the runner puts the repository root on
PYTHONPATH, which worker processes inherit), so both systems send them by
reference, identically.
"""


def inc(x):
    return x + 1


def make_array(nbytes, seed=0):
    """A float64 array of ``nbytes`` random (incompressible) bytes."""
    import numpy as np

    return np.random.default_rng(seed).random(nbytes // 8)


def nbytes_of(x):
    return int(x.nbytes)


def element(x, i):
    return float(x[i])
