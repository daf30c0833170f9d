"""Ray Tune searches over gin bindings, running the same experiment loop as ``gnn1000 train``."""
