"""A message's fragments, joined in a MessageBuffer, give back the message exactly."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capydeploy.agent.message_buffer import MessageBuffer


def _split(whole: str | bytes, cuts: list[int]) -> list[str | bytes]:
    points = sorted({0, len(whole), *(cut % (len(whole) + 1) for cut in cuts)})
    return [whole[start:end] for start, end in itertools.pairwise(points)]


@given(
    st.text(st.characters(blacklist_categories=("Cs",))),
    st.lists(st.integers(0, 10_000), max_size=8),
    st.integers(1, 64),
)
def test_text_fragments_join_to_the_message(message: str, cuts: list[int], capacity: int) -> None:
    # Any capacity: the buffer grows past it if it must (the connection's limit keeps it from).
    with MessageBuffer(capacity) as buffer:
        for fragment in _split(message, cuts):
            buffer.append(fragment)
        assert len(buffer) == len(message.encode())
        assert buffer.text() == message


@given(st.binary(), st.lists(st.integers(0, 10_000), max_size=8))
def test_binary_fragments_join_to_the_message(message: bytes, cuts: list[int]) -> None:
    with MessageBuffer(len(message)) as buffer:
        for fragment in _split(message, cuts):
            buffer.append(fragment)
        assert buffer.data() == message


@pytest.mark.parametrize("text", ["ascii only, " * 3000, "données/niveau-01.pak, " * 3000, "a" * 9000 + "😀" * 3000])
def test_a_long_message_grows_past_its_first_reservation(text: str) -> None:
    with MessageBuffer(1) as buffer:
        for fragment in _split(text, [7, 5000, 20001]):
            buffer.append(fragment)
        assert buffer.text() == text
