"""Timing and size limits of the protocol (the seed's Timing table made precise by D4/D6)."""

from __future__ import annotations

from typing import Final

PROTOCOL_VERSION: Final = 1
DEFAULT_PORT: Final = 9999
WS_PATH: Final = "/ws"
MDNS_SERVICE_TYPE: Final = "_capydeploy._tcp.local."

# Seconds.
PING_PERIOD: Final = 5.0
PONG_WAIT: Final = 15.0
WRITE_WAIT: Final = 10.0
REQUEST_TIMEOUT: Final = 30.0
HANDSHAKE_TIMEOUT: Final = 10.0
PAIRING_CODE_TTL: Final = 60.0
PAIRING_LOCKOUT: Final = 300.0
PAIRING_MAX_ATTEMPTS: Final = 3
PROGRESS_INTERVAL: Final = 0.25
STAGING_TTL: Final = 24 * 3600.0
RESTART_WINDOW: Final = 60.0
RESTARTS_PER_WINDOW: Final = 2

# Bytes and counts.
MAX_MESSAGE: Final = 10 * 1024 * 1024
CHUNK_SIZE: Final = 1024 * 1024
MAX_CHUNK_HEADER: Final = 64 * 1024
MAX_UNACKED_WORK: Final = 64 * 1024 * 1024
MAX_PENDING_HANDSHAKES: Final = 32
MAX_PENDING_PER_ADDRESS: Final = 8  # of those, from one IPv4 address or IPv6 /64
MAX_GAME_NAME_BYTES: Final = 255
MAX_RELATIVE_PATH_BYTES: Final = 4096
MAX_PATH_COMPONENT_BYTES: Final = 255
MAX_FILES: Final = 100_000
MAX_FILE_SIZE: Final = 2**50
MAX_ID_LENGTH: Final = 128
MAX_NAME_LENGTH: Final = 255
MAX_TOKEN_LENGTH: Final = 256
MAX_URL_LENGTH: Final = 4096
MAX_TEXT_LENGTH: Final = 4096
MAX_TAGS: Final = 64
ARTWORK_MAX_BYTES: Final = 20 * 1024 * 1024
ARTWORK_TIMEOUT: Final = 30.0
ARTWORK_MAX_REDIRECTS: Final = 3

# The SteamID64 of account id 0 in the public universe (D5).
STEAMID64_BASE: Final = 76561197960265728
UINT32_MAX: Final = 2**32 - 1

# How a complete_upload error reply starts when whole files failed their sha256 and were discarded;
# a Hub that sent those hashes with complete_upload answers it with one more pass.
SHA256_MISMATCH: Final = "sha256 mismatch"
# How a complete_upload error reply starts when bytes are missing; it lists them. Files the Agent
# had carried from the installed version can go missing this way (the installed game changed
# before completion): a Hub answers it with one more pass, which sends what is missing.
UPLOAD_INCOMPLETE: Final = "upload incomplete"

CAPABILITIES: Final = (
    "file_upload",
    "resume",
    "incremental",
    "steam_shortcuts",
    "artwork",
    "steam_restart",
    "delete_game",
    # Extension (docs/protocol.md): `complete_upload` may carry whole-file `sha256` values the Hub
    # computed while sending, for files its `init_upload` listed without one.
    "complete_sha256",
    # Extension: `complete_upload`'s `operation_result` carries the whole-file `sha256` the Agent
    # found for each file whose hash the Hub never gave, so the Hub need not hash what it sends.
    "result_sha256",
)
