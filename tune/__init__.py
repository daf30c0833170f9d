"""Ray Tune searches over gin bindings, running the same experiment loop as ``gnn1000 train``.

``space`` reads a search file's ``search.*`` bindings, ``trial`` is one trial, ``launcher`` runs them.
"""

from gnn1000.tune.launcher import Search, load_search, run_search
from gnn1000.tune.space import DISTRIBUTIONS, SearchConfig

__all__ = ["DISTRIBUTIONS", "Search", "SearchConfig", "load_search", "run_search"]
