"""The lab beside the product: benchmarks, scale and stress runs, and experiment scripts.

Not installed (it is no package in pyproject.toml); run from the repository root, for example
`python -m bench.speed`. `make bench`, `make scale` and `make stress` run the three main ones.
"""
