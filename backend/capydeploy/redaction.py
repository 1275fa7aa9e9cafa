"""Keeps pairing codes and tokens out of log lines, whichever library writes them (D3)."""

from __future__ import annotations

import logging
import re
import threading

# JSON fields whose values are secrets, as they appear in frames a library might log.
_SECRET_FIELDS = re.compile(r"""(["']?(?:token|code)["']?\s*[:=]\s*)(["'])(?:(?!\2).)+\2""", re.IGNORECASE)
MASK = "[redacted]"


class SecretRegistry:
    """Exact secret strings issued by this process (codes, tokens): masked wherever they appear."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()

    def add(self, secret: str) -> None:
        if len(secret) >= 6:
            with self._lock:
                self._secrets.add(secret)

    def scrub(self, text: str) -> str:
        text = _SECRET_FIELDS.sub(lambda match: f"{match.group(1)}{match.group(2)}{MASK}{match.group(2)}", text)
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


SECRETS = SecretRegistry()


class RedactingFilter(logging.Filter):
    """A handler filter: renders the message, scrubs it, and stores the result back."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        scrubbed = SECRETS.scrub(message)
        if scrubbed != message or record.args:
            record.msg = scrubbed
            record.args = None
        if record.exc_text:
            record.exc_text = SECRETS.scrub(record.exc_text)
        return True


def install_redaction(logger: logging.Logger | None = None) -> None:
    """Add the filter to every handler of `logger` (default: the root logger)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(existing, RedactingFilter) for existing in handler.filters):
            handler.addFilter(RedactingFilter())
