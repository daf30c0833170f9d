"""An example gnn1000 plugin: GATv2 as an operator and PairNorm as a norm.

Nothing here registers on import: gnn1000 finds both through this distribution's entry points
(see pyproject.toml) and imports a module only when its name is asked for.
"""
