"""Log lines written by a thread of their own, not by the thread that logs them.

A log line is a write to a file. While a deploy leaves many pages waiting to be written to disk,
Linux may hold any thread that dirties more pages for up to 200 ms (dirty-page throttling): the
Agent's event loop, which the plugin's panel shares, must not be that thread. One unexplained
238 ms stall of the loop in a 100 000-file deploy (docs/performance.md, ninth session) fits it.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from logging.handlers import QueueHandler, QueueListener


def write_logs_from_a_thread(*loggers: logging.Logger) -> Callable[[], None]:
    """Put each logger's handlers behind a queue that a thread of their own empties. Returns the
    function that undoes it, once every line queued so far is written (call it at shutdown).

    The handlers keep their filters (the redaction of secrets runs where the line is written)
    and their formats; a record's message is made, with its arguments and any traceback, when
    it is queued (as `QueueHandler` does)."""
    undo: list[Callable[[], None]] = []
    for logger in loggers:
        handlers = [handler for handler in logger.handlers if not isinstance(handler, QueueHandler)]
        if not handlers:
            continue
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        front = QueueHandler(records)
        for handler in handlers:
            logger.removeHandler(handler)
        logger.addHandler(front)
        listener = QueueListener(records, *handlers, respect_handler_level=True)
        listener.start()
        undo.append(_undoer(logger, front, handlers, listener))

    def stop() -> None:
        while undo:
            undo.pop()()

    return stop


def _undoer(
    logger: logging.Logger, front: QueueHandler, handlers: list[logging.Handler], listener: QueueListener
) -> Callable[[], None]:
    def undo() -> None:
        logger.removeHandler(front)
        for handler in handlers:
            logger.addHandler(handler)
        listener.stop()  # writes what was queued, then ends the thread

    return undo


def loggers_up_from(logger: logging.Logger) -> list[logging.Logger]:
    """`logger` and the loggers its records reach (its parents, while it propagates)."""
    chain: list[logging.Logger] = []
    current: logging.Logger | None = logger
    while current is not None:
        chain.append(current)
        current = current.parent if current.propagate else None
    return chain
