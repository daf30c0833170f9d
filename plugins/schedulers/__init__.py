"""Learning-rate schedulers: ``factory(optimizer, *, epochs, mode, ...) -> scheduler or None``, stepped once per epoch."""
