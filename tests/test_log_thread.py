"""Log lines are written by a thread of their own (log_thread): never by the thread that logs,
all of them by shutdown, through the same handlers, filters and formats."""

from __future__ import annotations

import io
import logging
import threading

from capydeploy.log_thread import loggers_up_from, write_logs_from_a_thread
from capydeploy.redaction import SECRETS, RedactingFilter


class ThreadRecordingHandler(logging.StreamHandler[io.StringIO]):
    """Writes to a string, and notes which thread wrote each line."""

    def __init__(self) -> None:
        super().__init__(io.StringIO())
        self.threads: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.threads.append(threading.current_thread().name)
        super().emit(record)


def test_lines_are_written_by_another_thread_all_of_them_by_the_stop() -> None:
    logger = logging.getLogger("capydeploy.test.log_thread")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = ThreadRecordingHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    secret = "pairing-token-abcdefghijklmnop"
    SECRETS.add(secret)
    try:
        stop = write_logs_from_a_thread(logger)
        assert handler not in logger.handlers  # behind the queue now
        for n in range(200):
            logger.info("line %d", n)
        logger.info("token %s", secret)
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
        stop()
        assert logger.handlers == [handler]  # as it was
        lines = handler.stream.getvalue().splitlines()
        assert lines[:200] == [f"INFO capydeploy.test.log_thread: line {n}" for n in range(200)]
        assert secret not in handler.stream.getvalue()  # the handler's filter still runs
        assert "ValueError: boom" in handler.stream.getvalue()  # the traceback with its line
        assert threading.current_thread().name not in handler.threads
        logger.info("after")  # written at once again, by the caller
        assert handler.threads[-1] == threading.current_thread().name
    finally:
        logger.removeHandler(handler)


def test_the_chain_of_a_logger_is_the_loggers_its_records_reach() -> None:
    child = logging.getLogger("capydeploy.test.chain.child")
    parent = logging.getLogger("capydeploy.test.chain")
    assert loggers_up_from(child)[:2] == [child, parent]
    assert loggers_up_from(child)[-1] is logging.getLogger()
    parent.propagate = False
    try:
        assert loggers_up_from(child) == [child, parent]
    finally:
        parent.propagate = True
