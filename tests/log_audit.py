"""pytest plugin: no pairing code or token in any log line of the whole test session.

Registered in pytest.ini with `-p tests.log_audit`. At session start it

* wraps `capydeploy.redaction.SECRETS.add`, through which every code and token the product issues
  (or a Hub loads) is registered, to learn each secret;
* puts a handler on the root logger that renders every record the way the product's own handlers
  do (through `RedactingFilter`, traceback included) and keeps the line; and a handler on the
  `capydeploy` logger that keeps the product's own messages *before* any redaction: product code
  must never put a secret into a message in the first place;
* lowers the root logger to DEBUG, so websockets' frame logs of every test are audited too (about
  +20 % suite time; `CAPYDEPLOY_LOG_AUDIT_LEVEL=INFO` for a lighter run).

At session end every kept line is searched for every secret: a 6-digit code as a number of its
own, a token (or any other long secret) by any 12-character piece of it, as a frame log may cut a
token in two. A leak fails the session (exit status 1) and names the test and the line.

A 6-digit code is searched for only in the lines of the test that issued it (every Agent lives in
one test), and never in the value of a byte-count field (`"totalWritten":460803`): with 150 codes
in a session and thousands of acknowledgements, some byte count equals some test's code in about
one run in five, which is chance, not a leak.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from capydeploy import redaction

PIECE = 12
MAX_LINES = 2_000_000
_RUNS = re.compile(rf"[A-Za-z0-9_\-]{{{PIECE},}}")
_NUMBERS = re.compile(r"(?<!\d)\d{6}(?!\d)")
# JSON fields whose values are byte counts or offsets, never a code.
_BYTE_COUNT_VALUE = re.compile(r'"(?:totalWritten|bytesWritten|offset|size|totalSize|bytesDone|bytesTotal)":\s*$')


@dataclass
class _Audit:
    lock: threading.Lock = field(default_factory=threading.Lock)
    secrets: set[str] = field(default_factory=set)
    issued_in: dict[str, str] = field(default_factory=dict)  # secret -> the test that issued it first
    shown: list[tuple[str, str]] = field(default_factory=list)  # (test id, rendered line)
    raw: list[tuple[str, str]] = field(default_factory=list)  # (test id, product message before redaction)
    test: str = "(session)"
    dropped: int = 0
    leaks: list[str] = field(default_factory=list)

    def keep(self, into: list[tuple[str, str]], line: str) -> None:
        with self.lock:
            if len(into) < MAX_LINES:
                into.append((self.test, line))
            else:
                self.dropped += 1


_AUDIT = _Audit()


class _ShownLines(logging.Handler):
    """Renders a copy of each record as a redacting product handler would, and keeps the line."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self._redact = redaction.RedactingFilter()

    def handle(self, record: logging.LogRecord) -> bool:
        # A copy: filters added to this handler (install_redaction adds one to every root handler)
        # and ours must not change the record the other handlers see.
        return super().handle(copy.copy(record))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._redact.filter(record)
            _AUDIT.keep(_AUDIT.shown, self.format(record))
        except Exception:
            self.handleError(record)


class _RawProductMessages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _AUDIT.keep(_AUDIT.raw, record.getMessage())
        except Exception:
            self.handleError(record)


_original_add = redaction.SECRETS.add


def _recording_add(secret: str) -> None:
    if isinstance(secret, str) and secret:
        with _AUDIT.lock:
            _AUDIT.secrets.add(secret)
            _AUDIT.issued_in.setdefault(secret, _AUDIT.test)
    _original_add(secret)


def pytest_sessionstart(session: pytest.Session) -> None:
    redaction.SECRETS.add = _recording_add  # type: ignore[method-assign]
    root = logging.getLogger()
    root.addHandler(_ShownLines())
    logging.getLogger("capydeploy").addHandler(_RawProductMessages())
    level = os.environ.get("CAPYDEPLOY_LOG_AUDIT_LEVEL", "DEBUG").upper()
    root.setLevel(min(root.level or logging.WARNING, getattr(logging, level, logging.DEBUG)))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    _AUDIT.test = item.nodeid
    try:
        return (yield)
    finally:
        _AUDIT.test = "(between tests)"


def _numbers_outside_byte_counts(line: str) -> list[str]:
    return [
        match.group()
        for match in _NUMBERS.finditer(line)
        if not _BYTE_COUNT_VALUE.search(line, max(0, match.start() - 20), match.start())
    ]


def find_leaks(
    lines: list[tuple[str, str]], secrets: set[str], issued_in: dict[str, str] | None = None
) -> list[str]:
    """Lines holding a secret: codes as whole numbers (in the test that issued them, when
    `issued_in` says which; outside byte-count fields), long secrets by any PIECE-long piece."""
    issued_in = issued_in or {}
    codes = {secret for secret in secrets if len(secret) == 6 and secret.isdigit()}
    pieces: dict[str, str] = {}
    short = []
    for secret in secrets - codes:
        if len(secret) >= 2 * PIECE:
            for start in range(len(secret) - PIECE + 1):
                pieces[secret[start : start + PIECE]] = secret
        elif len(secret) >= 6:
            short.append(secret)
    leaks = []
    for test, line in lines:
        found = [
            number
            for number in _numbers_outside_byte_counts(line)
            if number in codes and issued_in.get(number, test) == test
        ]
        for run in _RUNS.findall(line):
            if any(run[i : i + PIECE] in pieces for i in range(len(run) - PIECE + 1)):
                found.append("a piece of a token")
                break
        found += [secret for secret in short if secret in line]
        if found:
            leaks.append(f"{test}: {', '.join(sorted(set(found)))} in: {line[:300]}")
    return leaks


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    with _AUDIT.lock:
        secrets = set(_AUDIT.secrets)
        issued_in = {secret: test for secret, test in _AUDIT.issued_in.items() if not test.startswith("(")}
        shown, raw = list(_AUDIT.shown), list(_AUDIT.raw)
    _AUDIT.leaks = [f"log line: {leak}" for leak in find_leaks(shown, secrets, issued_in)]
    _AUDIT.leaks += [f"product message: {leak}" for leak in find_leaks(raw, secrets, issued_in)]
    if _AUDIT.leaks and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    audit = _AUDIT
    summary = (
        f"log audit: {len(audit.shown)} log lines and {len(audit.raw)} product messages searched for "
        f"{len(audit.secrets)} secrets issued; {len(audit.leaks)} leaks"
    )
    if audit.dropped:
        summary += f" ({audit.dropped} lines past the first {MAX_LINES} not kept)"
    if audit.leaks:
        terminalreporter.section("log audit: secrets in log lines", sep="=", red=True)
        for leak in audit.leaks[:50]:
            terminalreporter.write_line(leak)
        terminalreporter.write_line(summary, red=True)
    else:
        terminalreporter.write_line(summary)
