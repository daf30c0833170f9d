"""Benchmarks behind `gnn1000 bench <name>`: each module exposes ``main(argv)`` and prints ratios measured in one run."""
