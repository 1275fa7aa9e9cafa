"""The hashes complete_upload found read as a plain path -> hex map, in the order they were found."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from capydeploy.agent.transfer.found_digests import FoundDigests


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.binary(max_size=16), max_size=30))
def test_found_digests_read_as_the_dict_of_their_hex_digests(contents: dict[str, bytes]) -> None:
    found = FoundDigests()
    expected: dict[str, str] = {}
    for path, data in contents.items():
        digest = hashlib.sha256(data).digest()
        found.add(path, digest)
        expected[path] = digest.hex()
    assert len(found) == len(expected) and list(found) == list(expected)
    assert list(found.items()) == list(expected.items())  # in order, read twice alike
    assert list(found.items()) == list(expected.items())
    assert found == expected and dict(found) == expected
    for path, digest in expected.items():
        assert found[path] == digest and path in found
    assert (object() in found) is False
