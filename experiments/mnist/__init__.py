"""The MNIST campaign: vanilla, GNT, Speckle and ANT on the generated MNIST-C suite, every
setting chosen on validation, each chosen model tested once (README.md in this folder).

Run its scripts from the repository root as ``python -m experiments.mnist.<name>``.
"""
