"""Shipped gin configs: the default job, the paper's models per dataset, and tune searches."""
