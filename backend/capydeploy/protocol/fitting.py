"""Keeping a text frame of a big game within the 10 MiB message limit (D4).

D6 allows 100 000 files, and a per-file map of that many (an `init_upload` with every `sha256`, the
`result_sha256` of `complete_upload`) can exceed 10 MiB, which the receiver answers by closing the
connection (1009). The per-file hashes and `resumeFrom` are optional and only save work: a file
left out of them is sent or hashed again. So a frame that would be too large keeps as many of them
as fit, and drops the rest.
"""

from __future__ import annotations

from collections.abc import Callable

from . import constants


def utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def fits(text: str) -> bool:
    """Whether a text frame is within the message limit (read at call time)."""
    return utf8_length(text) <= constants.MAX_MESSAGE


def keep_what_fits(
    count: int, encode: Callable[[int], str], guess: Callable[[int], int] | None = None
) -> tuple[int, str | None]:
    """The most optional items `k <= count` whose frame `encode(k)` fits, with that frame.

    `encode(k)` must grow with `k`. (count, frame) when all fit, the usual case and one call;
    otherwise a binary search (17 encodings for 100 000 items), which `guess` (bytes over the limit
    -> items to keep) can spare: a right guess costs two more encodings. (0, None) when even
    `encode(0)` is too large.
    """
    text = encode(count)
    if fits(text):
        return count, text
    low, high = 0, count - 1
    best: tuple[int, str] | None = None
    if guess is not None and count > 0:
        first = min(max(guess(utf8_length(text) - constants.MAX_MESSAGE), 0), high)
        candidate = encode(first)
        if not fits(candidate):
            high = first - 1
        else:
            best, low = (first, candidate), first + 1
            if low <= high:
                following = encode(low)
                if not fits(following):
                    return best
                best, low = (low, following), low + 1
    while low <= high:
        middle = (low + high) // 2
        candidate = encode(middle)
        if fits(candidate):
            low, best = middle + 1, (middle, candidate)
        else:
            high = middle - 1
    return best if best is not None else (0, None)
