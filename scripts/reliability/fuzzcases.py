"""Hypothesis strategies for hostile frames: text frames, envelopes, payloads and binary chunk frames.

A strategy draws a *spec*; `render(spec, context)` turns it into the bytes to send. Specs may hold
markers (`UPLOAD_ID`, `FilePick`...) that only the fuzz connection knows at send time (the id of
the upload it opened, its files), so binary chunks can aim at a real upload.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from capydeploy.protocol.catalog import REQUEST_MODELS, MessageType
from capydeploy.protocol.constants import CHUNK_SIZE, MAX_CHUNK_HEADER, MAX_MESSAGE

REQUEST_TYPES = [message_type.value for message_type in REQUEST_MODELS]
OTHER_TYPES = [message_type.value for message_type in MessageType if message_type not in REQUEST_MODELS]
STEAM_ACCOUNT = 52079950
STEAM_ID64 = 76561197960265728 + STEAM_ACCOUNT

# Strings a hostile Hub would try in any field: traversal in every disguise, look-alikes, limits.
HOSTILE_STRINGS: tuple[str, ...] = (
    "",
    ".",
    "..",
    "../",
    "../../../../etc/passwd",
    "/etc/passwd",
    "/",
    "//server/share",
    "..\\..\\windows",
    "C:\\Windows",
    "C:",
    "a\x00b",
    "\x00",
    "%2e%2e%2f%2e%2e%2f",
    "%252e%252e",
    "..%c0%af..",
    "\uff0e\uff0e\uff0f",  # fullwidth dots and solidus
    "\u2024\u2024/",  # one dot leaders
    "\u2025",  # two dot leader
    "..\u2215..\u2215",  # division slash
    "..\u2044",  # fraction slash
    "\ufe52\ufe52",  # small full stops
    "\u202egpj.exe",  # right-to-left override
    "\ufeff",
    "\u200b..",
    "a" * 256,
    "\u00e9" * 128,
    "\U0001d552" * 70,
    "x" * 4097,
    "\n",
    "\r\n",
    "\x7f",
    "\x85",
    "\x1b[2J",
    ".capydeploy",
    "~",
    "$(id)",
    "`id`",
    "%s%s%s%n",
    "{0}{1}",
    "<script>",
    "' OR 1=1 --",
    "CON",
    "NUL",
    "\ud800",  # a lone surrogate: reaches the Agent only JSON-escaped (\\ud800)
    "\udfff\ud800",
    "\U0010ffff",
)

BOUNDARY_NUMBERS: tuple[Any, ...] = (
    -1,
    0,
    1,
    255,
    256,
    2**31 - 1,
    -(2**31),
    2**32 - 1,
    2**32,
    2**50,
    2**50 + 1,
    2**53 + 1,
    2**63,
    2**64,
    -(2**63),
    10**30,
    STEAM_ID64,
    STEAM_ID64 + 2**32,
    1.0,
    0.5,
    -0.0,
    1e308,
    float("inf"),
    float("-inf"),
    float("nan"),
    True,
    False,
    "5",
    "0x10",
    "1e3",
)


# --- markers resolved at send time ------------------------------------------------------------


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


UPLOAD_ID = _Marker("UPLOAD_ID")  # the fuzz connection's real upload id (or a fake one before auth)


@dataclass(frozen=True)
class FilePick:
    """One of the fuzz upload's files: its path (`what="path"`) or its size."""

    index: int
    what: str = "path"


@dataclass
class FuzzContext:
    """What the fuzz connection knows when it renders a spec."""

    upload_id: str = "no-upload-yet"
    files: list[tuple[str, int]] = field(default_factory=lambda: [("a.bin", 4096)])
    chunk_size: int = CHUNK_SIZE


def _resolve(value: Any, context: FuzzContext) -> Any:
    if value is UPLOAD_ID:
        return context.upload_id
    if isinstance(value, FilePick):
        path, size = context.files[value.index % len(context.files)]
        return path if value.what == "path" else size
    if isinstance(value, dict):
        return {key: _resolve(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, context) for item in value]
    return value


# --- specs --------------------------------------------------------------------------------


@dataclass
class TextSpec:
    """A text frame: a JSON document (`value`) dumped one way or another, or `raw` text."""

    family: str
    value: Any = None
    raw: str | None = None
    ensure_ascii: bool = False
    mutation: str = "none"
    cut: int = 0
    fragments: int = 1


@dataclass
class InvalidUtf8Spec:
    """Bytes sent in a text frame that are not UTF-8 (the Agent must close with 1007)."""

    family: str
    data: bytes


@dataclass
class BinarySpec:
    """A binary frame: `[u32 length][header][data]` with every part open to damage."""

    family: str
    header: Any = None  # JSON value (markers allowed), or None for `raw_frame`
    raw_header: bytes | None = None
    length_mode: str = "ok"  # ok, zero, huge, plus, minus, max_header
    length_delta: int = 0
    data_size: int = 0
    data_seed: int = 0
    checksum: str = "none"  # none, ok, wrong, upper, short, garbage
    cut: int | None = None  # truncate the finished frame to this many bytes
    raw_frame: bytes | None = None


@dataclass
class OversizedSpec:
    """A frame larger than the 10 MiB limit (the Agent must close with 1009 without buffering it)."""

    family: str
    binary: bool
    excess: int


Spec = TextSpec | InvalidUtf8Spec | BinarySpec | OversizedSpec


@dataclass
class Rendered:
    """What to send, and the id the reply must carry ("" when the id cannot be read)."""

    kind: str  # text, text-bytes, binary
    data: str | bytes | list[str]
    reply_id: str
    family: str
    message_type: str | None = None
    # Nesting near the recursion limit parses or not depending on the parser's own stack depth,
    # so the Agent may read the id of such a frame or not: both replies are right.
    id_uncertain: bool = False


def _readable_id(value: Any) -> str:
    if isinstance(value, dict):
        candidate = value.get("id")
        if isinstance(candidate, str) and len(candidate) <= 128:
            return candidate
    return ""


def _dumps(value: Any, ensure_ascii: bool) -> str:
    text = json.dumps(value, ensure_ascii=ensure_ascii, allow_nan=True)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate travels only as a JSON escape
        text = json.dumps(value, ensure_ascii=True, allow_nan=True)
    return text


def _mutate_text(text: str, spec: TextSpec) -> str:
    mutation = spec.mutation
    if mutation == "truncate":
        return text[: spec.cut % max(1, len(text))]
    if mutation == "bom":
        return "\ufeff" + text
    if mutation == "trailing":
        return text + " ,}"
    if mutation == "duplicate-id" and text.startswith("{"):
        return '{"id": 7, ' + text[1:]
    if mutation == "single-quotes":
        return text.replace('"', "'")
    if mutation == "wrap":
        return f"[{text}]"
    if mutation == "twice":
        return text + text
    if mutation == "comment":
        return "/* hub */ " + text
    if mutation == "whitespace":
        return " \t\r\n" * 8 + text + "\n" * 8
    return text


def render(spec: Spec, context: FuzzContext) -> Rendered:
    """Build the frame of `spec` for this connection."""
    if isinstance(spec, InvalidUtf8Spec):
        return Rendered("text-bytes", spec.data, "", spec.family)
    if isinstance(spec, OversizedSpec):
        size = MAX_MESSAGE + spec.excess
        if spec.binary:
            return Rendered("binary", b"\x00" * size, "", spec.family)
        return Rendered("text", '{"id":"big","type":"ping","payload":{"x":"' + "a" * size + '"}}', "", spec.family)
    if isinstance(spec, TextSpec):
        text = spec.raw if spec.raw is not None else _dumps(_resolve(spec.value, context), spec.ensure_ascii)
        text = _mutate_text(text, spec)
        data: str | list[str] = text
        if spec.fragments > 1 and len(text) >= spec.fragments:
            step = max(1, len(text) // spec.fragments)
            data = [text[i : i + step] for i in range(0, len(text), step)]
        reply_id, message_type = _text_facts(text)
        return Rendered("text", data, reply_id, spec.family, message_type, id_uncertain=spec.family == "deep")
    return _render_binary(spec, context)


def _render_binary(spec: BinarySpec, context: FuzzContext) -> Rendered:
    if spec.raw_frame is not None:
        frame = spec.raw_frame
        return Rendered("binary", frame, _binary_reply_id(frame), spec.family)
    data = random.Random(spec.data_seed).randbytes(spec.data_size) if spec.data_size else b""
    header = _resolve(spec.header, context)
    if isinstance(header, dict) and spec.checksum != "none":
        digest = hashlib.sha256(data).hexdigest()
        header = dict(header)
        header["checksum"] = {
            "ok": digest,
            "wrong": hashlib.sha256(data + b"!").hexdigest(),
            "upper": digest.upper(),
            "short": digest[:63],
            "garbage": "sha256...",
        }.get(spec.checksum, digest)
    encoded = spec.raw_header if spec.raw_header is not None else json.dumps(header, allow_nan=True).encode()
    length = len(encoded)
    if spec.length_mode == "zero":
        length = 0
    elif spec.length_mode == "huge":
        length = 0xFFFFFFFF
    elif spec.length_mode == "plus":
        length += spec.length_delta
    elif spec.length_mode == "minus":
        length = max(0, length - spec.length_delta)
    elif spec.length_mode == "max_header":
        length = MAX_CHUNK_HEADER + 1
    frame = struct.pack(">I", length & 0xFFFFFFFF) + encoded + data
    if spec.cut is not None:
        frame = frame[: spec.cut % (len(frame) + 1)]
    return Rendered("binary", frame, _binary_reply_id(frame), spec.family)


def text_reply_id(text: str) -> str:
    """The id the Agent can read from a text frame ("" when it cannot), following its parser."""
    return _text_facts(text)[0]


def _text_facts(text: str) -> tuple[str, str | None]:
    """(readable id, message type) of a text frame, as the Agent's parser would see them."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return "", None
    message_type = value.get("type") if isinstance(value, dict) else None
    return _readable_id(value), message_type if isinstance(message_type, str) else None


def _binary_reply_id(frame: bytes) -> str:
    """The id the Agent can read from a chunk frame, following its decoder's rules."""
    if len(frame) < 4 or len(frame) > MAX_MESSAGE:
        return ""
    (length,) = struct.unpack_from(">I", frame)
    if length == 0 or length > MAX_CHUNK_HEADER or length > len(frame) - 4:
        return ""
    try:
        header = json.loads(frame[4 : 4 + length].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return ""
    return _readable_id(header)


# --- strategies -------------------------------------------------------------------------------


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(char) <= 0xDFFF for char in text)


hostile_text = st.sampled_from(HOSTILE_STRINGS)
# Raw text frames must be UTF-8: a lone surrogate cannot travel in one (it would be a 1007 case).
encodable_hostile_text = st.sampled_from([text for text in HOSTILE_STRINGS if not _has_surrogate(text)])
# Any Unicode, surrogates included: those reach the Agent only through JSON escapes (ensure_ascii).
any_text = st.text(st.characters(exclude_categories=()), max_size=40)
plain_text = st.text(max_size=40)
numbers = st.one_of(
    st.sampled_from(BOUNDARY_NUMBERS),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, plain_text, hostile_text)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.one_of(plain_text, hostile_text), children, max_size=4)
    )


json_values = st.recursive(scalars, _containers, max_leaves=10)


@st.composite
def weighted(draw: st.DrawFn, *choices: tuple[int, st.SearchStrategy[Any]]) -> Any:
    """One of the strategies, picked with the given weights.

    (`st.one_of(good, good, good, bad)` does not weigh: Hypothesis flattens and de-duplicates the
    branches, so `good` would be drawn as rarely as each branch of `bad`.)
    """
    roll = draw(st.integers(0, sum(weight for weight, _ in choices) - 1))
    for weight, strategy in choices:
        if roll < weight:
            return draw(strategy)
        roll -= weight
    raise AssertionError("unreachable")


_bad_values = st.one_of(hostile_text, numbers, json_values, any_text)


def wrong(good: st.SearchStrategy[Any], rate: int = 8) -> st.SearchStrategy[Any]:
    """Mostly a good value (so the frame gets past validation and into the handlers), else a hostile
    value or one of the wrong type; each field is corrupted on its own, about once in `rate`."""
    return weighted((rate - 1, good), (1, _bad_values))


readable_ids = st.integers(0, 10**6).map(lambda n: f"fz-{n}")
unreadable_ids = st.one_of(
    st.just(""),
    st.text(max_size=129),
    st.text(min_size=129, max_size=300),
    any_text,
    hostile_text,
    numbers,
    st.none(),
    st.lists(st.integers(), max_size=2),
)
ids = weighted((12, readable_ids), (1, unreadable_ids))
user_ids = wrong(st.sampled_from([STEAM_ID64, str(STEAM_ID64), STEAM_ACCOUNT, str(STEAM_ACCOUNT), 12345]))
app_ids = wrong(st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 2**32 - 1, 3000000000])))
sizes = wrong(st.one_of(st.integers(0, 10_000), st.sampled_from([0, 2**50, 2**40])))
upload_ids = wrong(st.one_of(st.just(UPLOAD_ID), st.text(min_size=1, max_size=20), st.just("upload-abc123")))
# Never the name the parallel deploy uses: a fuzz request must not touch that game.
game_names = wrong(st.sampled_from(["fz-game", "Fuzz Game", "\u00fcn\u00ef c\u00f8d\u00e9", "fz-other"]))
rel_paths = wrong(st.sampled_from(["a.bin", "dir/b.bin", "x/y/z.dat", "game.x86_64"]))
abs_paths = wrong(st.sampled_from(["/var/x", "/home/deck/Games", "/usr/bin/true", "/"]))
urls = wrong(
    st.sampled_from(
        [
            "https://example.invalid/grid.png",
            "http://127.0.0.1:1/x.png",
            "http://[::1]/x.png",
            "http://169.254.169.254/latest/meta-data/",
            "file:///etc/passwd",
            "ftp://x/y",
            "http://",
            "http://%zz/",
            "http://[::1",
        ]
    )
)
artwork = st.fixed_dictionaries(
    {}, optional={key: urls for key in ("grid", "banner", "hero", "logo", "icon", "other")}
)
booleans = wrong(st.booleans())
names = wrong(st.text(max_size=20))


def _sum_sizes(files: Any) -> int | None:
    if not isinstance(files, list):
        return None
    total = 0
    for entry in files:
        size = entry.get("size") if isinstance(entry, dict) else None
        if not isinstance(size, int) or isinstance(size, bool):
            return None
        total += size
    return total


def _files() -> st.SearchStrategy[Any]:
    entry = st.fixed_dictionaries(
        {"relativePath": rel_paths, "size": sizes},
        optional={"sha256": wrong(st.just("0" * 64)), "extra": json_values},
    )
    return wrong(st.lists(entry, max_size=5))


PAYLOADS: dict[str, st.SearchStrategy[Any]] = {
    "hub_connected": st.fixed_dictionaries(
        {"name": names, "version": names, "hubId": wrong(st.text(min_size=1, max_size=10)), "token": names},
        optional={"platform": names, "protocolVersion": wrong(st.just(1))},
    ),
    "pair_confirm": st.fixed_dictionaries({"code": wrong(st.from_regex(r"\A[0-9]{6}\Z"))}),
    "list_shortcuts": st.fixed_dictionaries({"userId": user_ids}),
    "create_shortcut": st.fixed_dictionaries(
        {
            "userId": user_ids,
            "shortcut": wrong(
                st.fixed_dictionaries(
                    {"name": names, "exe": abs_paths},
                    optional={
                        "startDir": abs_paths,
                        "launchOptions": names,
                        "tags": wrong(st.lists(names, max_size=3)),
                        "artwork": wrong(artwork),
                    },
                )
            ),
        },
        optional={"restartSteam": booleans},
    ),
    "delete_shortcut": st.fixed_dictionaries({"userId": user_ids, "appId": app_ids}, optional={"restartSteam": booleans}),
    "apply_artwork": st.fixed_dictionaries(
        {"userId": user_ids, "appId": app_ids, "artwork": wrong(artwork)}, optional={"restartSteam": booleans}
    ),
    "init_upload": st.builds(
        lambda config, files, total, consistent: {
            "config": config,
            "files": files,
            "totalSize": _sum_sizes(files) if consistent and _sum_sizes(files) is not None else total,
        },
        wrong(
            st.fixed_dictionaries({"gameName": game_names}, optional={"installPath": abs_paths, "executable": rel_paths})
        ),
        _files(),
        sizes,
        st.integers(0, 4).map(bool),
    ),
    "complete_upload": st.fixed_dictionaries(
        {"uploadId": upload_ids},
        optional={
            "createShortcut": booleans,
            "shortcut": wrong(st.fixed_dictionaries({}, optional={"name": names, "exe": rel_paths, "artwork": artwork})),
            "userId": user_ids,
            "restartSteam": booleans,
        },
    ),
    "cancel_upload": st.fixed_dictionaries({"uploadId": upload_ids}),
    "delete_game": st.fixed_dictionaries(
        {}, optional={"gameName": game_names, "appId": app_ids, "userId": user_ids, "restartSteam": booleans}
    ),
}


def _payload_for(message_type: Any) -> st.SearchStrategy[Any]:
    strategy = PAYLOADS.get(message_type) if isinstance(message_type, str) else None
    if strategy is None:
        return st.one_of(st.just({}), st.none(), json_values)
    return weighted((6, strategy), (1, st.none()), (1, json_values))


message_types = weighted(
    (8, st.sampled_from(REQUEST_TYPES)),
    (1, st.one_of(st.sampled_from(OTHER_TYPES), plain_text, hostile_text, numbers, st.none())),
)


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    message_type = draw(message_types)
    envelope: dict[str, Any] = {}
    if draw(st.integers(0, 19)):
        envelope["id"] = draw(ids)
    if draw(st.integers(0, 19)):
        envelope["type"] = message_type
    if draw(st.integers(0, 3)):
        envelope["payload"] = draw(_payload_for(message_type))
    if not draw(st.integers(0, 9)):
        envelope["error"] = draw(st.one_of(json_values, st.fixed_dictionaries({"code": numbers, "message": any_text})))
    if not draw(st.integers(0, 9)):
        envelope[draw(plain_text)] = draw(json_values)
    return envelope


MUTATIONS = ("truncate", "bom", "trailing", "duplicate-id", "single-quotes", "wrap", "twice", "comment", "whitespace")


@st.composite
def text_specs(draw: st.DrawFn) -> TextSpec:
    family = draw(
        st.sampled_from(
            ["envelope"] * 8 + ["mutated-envelope"] * 2 + ["json-value", "garbage", "deep", "huge-number", "long"]
        )
    )
    ensure_ascii = draw(st.booleans())
    fragments = draw(st.sampled_from([1] * 9 + [3, 40]))
    if family == "envelope":
        return TextSpec(family, value=draw(envelopes()), ensure_ascii=ensure_ascii, fragments=fragments)
    if family == "mutated-envelope":
        return TextSpec(
            family,
            value=draw(envelopes()),
            ensure_ascii=ensure_ascii,
            mutation=draw(st.sampled_from(MUTATIONS)),
            cut=draw(st.integers(0, 10_000)),
            fragments=fragments,
        )
    if family == "json-value":
        return TextSpec(family, value=draw(json_values), ensure_ascii=ensure_ascii)
    if family == "garbage":
        return TextSpec(family, raw=draw(st.one_of(st.text(max_size=200), encodable_hostile_text, st.just(""))))
    if family == "deep":
        depth = draw(st.sampled_from([10, 100, 990, 1001, 5000, 100_000]))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        inner = opener * depth + ("1" + closer * depth if draw(st.booleans()) else "")
        if draw(st.booleans()):
            return TextSpec(family, raw='{"id":"deep","type":"ping","payload":{"a":' + inner + "}}")
        return TextSpec(family, raw=inner)
    if family == "huge-number":
        digits = draw(st.sampled_from([20, 400, 4300, 4301, 100_000]))
        where = draw(st.sampled_from(["id", "payload", "appId", "exponent"]))
        number = "9" * digits if where != "exponent" else f"1e{'9' * min(digits, 50)}"
        raw = {
            "id": '{"id":' + number + ',"type":"ping"}',
            "payload": '{"id":"n","type":"ping","payload":' + number + "}",
            "appId": '{"id":"n","type":"delete_shortcut","payload":{"userId":1,"appId":' + number + "}}",
            "exponent": '{"id":"n","type":"list_shortcuts","payload":{"userId":' + number + "}}",
        }[where]
        return TextSpec(family, raw=raw)
    size = draw(st.sampled_from([4096, 65_536, 1_000_000, 5_000_000]))
    field_name = draw(st.sampled_from(["id", "type", "payload.name", "payload.gameName"]))
    if field_name == "id":
        value: Any = {"id": "i" * size, "type": "ping"}
    elif field_name == "type":
        value = {"id": "long", "type": "t" * size}
    elif field_name == "payload.name":
        value = {"id": "long", "type": "hub_connected", "payload": {"name": "n" * size, "version": "1", "hubId": "h", "token": ""}}
    else:
        value = {"id": "long", "type": "init_upload", "payload": {"config": {"gameName": "g" * size}, "totalSize": 0, "files": []}}
    return TextSpec(family, value=value)


invalid_utf8 = st.sampled_from(
    [
        b"\xff",
        b'{"id":"\xc3","type":"ping"}',
        b'{"id":"\xed\xa0\x80","type":"ping"}',  # an encoded surrogate (CESU-8)
        b'{"id":"\xc0\xaf","type":"ping"}',  # an overlong '/'
        b'{"id":"\xf4\x90\x80\x80","type":"ping"}',  # above U+10FFFF
        b"\x80\x80\x80",
    ]
).map(lambda data: InvalidUtf8Spec("invalid-utf8", data))


@st.composite
def chunk_headers(draw: st.DrawFn) -> Any:
    """A header aimed at the fuzz upload, then some of its fields damaged, dropped or added."""
    file_index = draw(st.integers(0, 7))
    header: dict[str, Any] = {
        "id": draw(readable_ids),
        "uploadId": UPLOAD_ID,
        "filePath": FilePick(file_index),
        "offset": draw(st.one_of(st.integers(0, 4096), st.sampled_from([0, 1, 4095, 1_048_576, 1_499_999]))),
    }
    damage = draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))
    for _ in range(damage):
        key = draw(st.sampled_from(["id", "uploadId", "filePath", "offset", "extra", "drop"]))
        if key == "drop":
            header.pop(draw(st.sampled_from(["id", "uploadId", "filePath", "offset"])), None)
        elif key == "extra":
            header[draw(plain_text)] = draw(json_values)
        elif key == "uploadId":
            header[key] = draw(st.one_of(hostile_text, numbers, any_text, st.just("upload-abc123")))
        elif key == "offset":
            header[key] = draw(st.one_of(numbers, st.just(FilePick(file_index, "size")), st.integers(0, 2**50)))
        else:
            header[key] = draw(st.one_of(hostile_text, numbers, json_values, any_text, ids))
    if not draw(st.integers(0, 29)):
        return draw(json_values)
    return header


@st.composite
def binary_specs(draw: st.DrawFn) -> BinarySpec:
    family = draw(st.sampled_from(["chunk"] * 6 + ["chunk-damaged"] * 2 + ["random-bytes", "bad-header"]))
    if family == "random-bytes":
        return BinarySpec(family, raw_frame=draw(st.binary(max_size=300)))
    data_size = draw(
        st.one_of(
            st.integers(0, 5000),
            st.sampled_from([0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE]),
        )
    )
    spec = BinarySpec(
        family,
        header=draw(chunk_headers()),
        data_size=data_size,
        data_seed=draw(st.integers(0, 2**32)),
        checksum=draw(st.sampled_from(["none", "ok", "ok", "ok", "wrong", "upper", "short", "garbage"])),
    )
    if family == "bad-header":
        spec.raw_header = draw(
            st.one_of(
                st.binary(max_size=64),
                st.just(b'{"id":"\xff"}'),
                st.just(b"[" * 5000),
                st.just(b'{"id":"x","uploadId":' + b"9" * 5000 + b"}"),
                st.just(b" " * (MAX_CHUNK_HEADER + 1)),
            )
        )
    if family == "chunk-damaged":
        spec.length_mode = draw(st.sampled_from(["zero", "huge", "plus", "minus", "max_header"]))
        spec.length_delta = draw(st.integers(1, 64))
        if draw(st.booleans()):
            spec.cut = draw(st.integers(0, 200))
    return spec


oversized = st.builds(OversizedSpec, family=st.just("oversized"), binary=st.booleans(), excess=st.sampled_from([1, 4096]))


@st.composite
def before_auth_specs(draw: st.DrawFn) -> Spec:
    """Frames from a connection that has not authenticated: mostly text; binary and huge ones close it."""
    roll = draw(st.integers(0, 199))
    if roll < 6:
        return draw(invalid_utf8)
    if roll < 16:
        return draw(binary_specs())
    if roll < 18:
        return draw(oversized)
    return draw(text_specs())


@st.composite
def after_auth_specs(draw: st.DrawFn) -> Spec:
    """Frames on the paired connection: text and chunk frames, never one that must close it."""
    if draw(st.integers(0, 9)) < 6:
        return draw(text_specs())
    return draw(binary_specs())
