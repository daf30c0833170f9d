"""Loggers: ``Logger(run_path, history)`` with ``log(record)`` once per epoch and ``close()``.

``history`` holds the records a resumed run already has, so a logger can start from what the run
really did. ``metrics.jsonl`` is always written by the run directory; these are chosen with
``experiment.loggers = ['tensorboard', 'csv']``.
"""
