"""Samplers: ``sampler.batches(graph, train)`` yields subgraphs that carry ``n_id``, their original node ids."""
