"""gnn1000's messages go through the standard :mod:`logging` module, under the logger ``gnn1000``
(``gnn1000.experiment``, ``gnn1000.repeats``, ...), so a Python user routes or silences them with the
usual calls::

    logging.getLogger("gnn1000").setLevel(logging.ERROR)  # a run without its epoch lines

Where nothing is configured (neither ``gnn1000`` nor the root logger has a handler), the first
``Experiment`` adds one handler that writes the messages to stdout at INFO, as the CLI does: Lightning's
rule, so a script that trains a model sees its epochs without setting up logging first. The CLI sets the
level with ``-v`` / ``-q``. Progress bars stay intact: ``Experiment.fit`` sends these messages through
``tqdm.write`` while its bars are live (``tqdm.contrib.logging.logging_redirect_tqdm``).

Warnings a user must act on (a DEQ solve that missed its tolerance, a damaged checkpoint) stay
:func:`warnings.warn`, once per run as before; errors are :class:`gnn1000.errors.Gnn1000Error`.
"""

from __future__ import annotations

import contextlib
import logging
import sys

ROOT = "gnn1000"
FORMAT = "%(message)s"  # the lines read as they did when they were printed


class StdoutHandler(logging.StreamHandler):
    """A handler on whatever ``sys.stdout`` is when a record comes (a captured or replaced one too),
    as :data:`logging.lastResort` does for stderr."""

    def __init__(self, level: int = logging.NOTSET):
        logging.Handler.__init__(self, level)
        self.setFormatter(logging.Formatter(FORMAT))

    @property
    def stream(self):
        return sys.stdout


def ensure_default_handler() -> None:
    """Messages to stdout at INFO unless the user configured logging (a handler on ``gnn1000`` or on
    the root logger) or set ``gnn1000``'s level; once per process."""
    logger = logging.getLogger(ROOT)
    if logger.handlers or logging.getLogger().handlers:
        return
    logger.addHandler(StdoutHandler())
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


@contextlib.contextmanager
def cli_logging(verbosity: int = 0):
    """The CLI's logging for one command: ``gnn1000``'s messages to stdout, where the command's results
    go too (stderr keeps the error paragraph alone); verbosity -1 (``-q``) shows warnings and errors
    only, 0 informs, 1 (``-v``) adds debugging detail."""
    logger = logging.getLogger(ROOT)
    saved = logger.handlers[:], logger.level
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    logger.handlers = [StdoutHandler()]
    logger.setLevel(level)
    try:
        yield logger
    finally:
        logger.handlers = saved[0]
        logger.setLevel(saved[1])


def tqdm_safe():
    """While progress bars are live: ``gnn1000``'s console handlers write through ``tqdm.write``."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm(loggers=[logging.getLogger(ROOT)])
