"""Keeps pairing codes and tokens out of log lines, whichever library writes them (D3)."""

from __future__ import annotations

import logging
import re
import threading

# JSON fields whose values are secrets, as they appear in frames a library might log.
_SECRET_FIELDS = re.compile(r"""(["']?(?:token|code)["']?\s*[:=]\s*)(["'])(?:(?!\2).)+\2""", re.IGNORECASE)
MASK = "[redacted]"
# Pieces of a long secret this long or longer are masked too: websockets' debug log shortens a
# frame by cutting out its middle, so a token can appear without its key and without its start.
FRAGMENT = 12
# Frames that carry a token or a code. A frame log cut in the middle may show the end of a secret
# this process never registered (a token a Hub sends to an Agent restarted since pairing, the token
# a Hub receives before it stores it): after such a frame's type, every run that could be a piece
# of a token, and every 6-digit number, is masked.
_SECRET_FRAME = re.compile(r"\b(?:pair_success|pair_confirm|hub_connected)\b")
_SECRET_RUN = re.compile(rf"[A-Za-z0-9_\-]{{{FRAGMENT},}}|(?<!\d)\d{{6}}(?!\d)")


class SecretRegistry:
    """Exact secret strings issued by this process (codes, tokens): masked wherever they appear."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._fragments: dict[str, str] = {}  # every FRAGMENT-long piece of a long secret -> the secret

    def add(self, secret: str) -> None:
        if len(secret) >= 6:
            with self._lock:
                self._secrets.add(secret)
                if len(secret) >= 2 * FRAGMENT:
                    for start in range(len(secret) - FRAGMENT + 1):
                        self._fragments[secret[start : start + FRAGMENT]] = secret

    def scrub(self, text: str) -> str:
        text = _SECRET_FIELDS.sub(lambda match: f"{match.group(1)}{match.group(2)}{MASK}{match.group(2)}", text)
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
            fragments = dict(self._fragments) if self._fragments else None
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        if fragments:
            text = _mask_fragments(text, fragments)
        return _mask_secret_frames(text)


def _mask_secret_frames(text: str) -> str:
    match = _SECRET_FRAME.search(text)
    if match is None:
        return text
    return text[: match.end()] + _SECRET_RUN.sub(MASK, text[match.end() :])


def _mask_fragments(text: str, fragments: dict[str, str]) -> str:
    """Mask every run of text that is a piece of a known secret at least FRAGMENT characters long."""
    pieces: list[str] = []
    position = start = 0
    while start <= len(text) - FRAGMENT:
        secret = fragments.get(text[start : start + FRAGMENT])
        if secret is None:
            start += 1
            continue
        end = start + FRAGMENT
        while end < len(text) and text[start : end + 1] in secret:
            end += 1
        while start > position and text[start - 1 : end] in secret:
            start -= 1
        pieces.append(text[position:start])
        pieces.append(MASK)
        position = start = end
    if not pieces:
        return text
    pieces.append(text[position:])
    return "".join(pieces)


SECRETS = SecretRegistry()


class RedactingFilter(logging.Filter):
    """A handler filter: renders the message (and any traceback), scrubs it, and stores the result back."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        scrubbed = SECRETS.scrub(message)
        if scrubbed != message or record.args:
            record.msg = scrubbed
            record.args = None
        # A traceback is rendered by the handler's formatter after this filter ran, unscrubbed,
        # unless it is rendered (and scrubbed) here first; formatters reuse exc_text.
        if record.exc_info and not record.exc_text:
            try:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            except Exception:
                record.exc_text = None
        if record.exc_text:
            record.exc_text = SECRETS.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = SECRETS.scrub(record.stack_info)
        return True


def install_redaction(logger: logging.Logger | None = None) -> None:
    """Add the filter to every handler of `logger` (default: the root logger)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(existing, RedactingFilter) for existing in handler.filters):
            handler.addFilter(RedactingFilter())
