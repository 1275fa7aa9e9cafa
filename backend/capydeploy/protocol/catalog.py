"""Which message types exist, which model holds each payload, and which reply answers each request."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel

from . import messages as m


class MessageType(StrEnum):
    # Hub -> Agent requests
    HUB_CONNECTED = "hub_connected"
    PAIR_CONFIRM = "pair_confirm"
    PING = "ping"
    GET_INFO = "get_info"
    GET_CONFIG = "get_config"
    GET_STEAM_USERS = "get_steam_users"
    LIST_SHORTCUTS = "list_shortcuts"
    CREATE_SHORTCUT = "create_shortcut"
    DELETE_SHORTCUT = "delete_shortcut"
    APPLY_ARTWORK = "apply_artwork"
    RESTART_STEAM = "restart_steam"
    INIT_UPLOAD = "init_upload"
    COMPLETE_UPLOAD = "complete_upload"
    CANCEL_UPLOAD = "cancel_upload"
    DELETE_GAME = "delete_game"
    # Agent -> Hub replies
    PAIRING_REQUIRED = "pairing_required"
    PAIR_SUCCESS = "pair_success"
    PAIR_FAILED = "pair_failed"
    AGENT_STATUS = "agent_status"
    PONG = "pong"
    INFO_RESPONSE = "info_response"
    CONFIG_RESPONSE = "config_response"
    STEAM_USERS_RESPONSE = "steam_users_response"
    SHORTCUTS_RESPONSE = "shortcuts_response"
    OPERATION_RESULT = "operation_result"
    ARTWORK_RESPONSE = "artwork_response"
    STEAM_RESPONSE = "steam_response"
    UPLOAD_INIT_RESPONSE = "upload_init_response"
    UPLOAD_CHUNK_RESPONSE = "upload_chunk_response"
    ERROR = "error"
    # Agent -> Hub push events
    UPLOAD_PROGRESS = "upload_progress"
    OPERATION_EVENT = "operation_event"


T = MessageType

# Request type -> payload model.
REQUEST_MODELS: dict[MessageType, type[BaseModel]] = {
    T.HUB_CONNECTED: m.HubConnected,
    T.PAIR_CONFIRM: m.PairConfirm,
    T.PING: m.Empty,
    T.GET_INFO: m.Empty,
    T.GET_CONFIG: m.Empty,
    T.GET_STEAM_USERS: m.Empty,
    T.LIST_SHORTCUTS: m.ListShortcuts,
    T.CREATE_SHORTCUT: m.CreateShortcut,
    T.DELETE_SHORTCUT: m.DeleteShortcut,
    T.APPLY_ARTWORK: m.ApplyArtwork,
    T.RESTART_STEAM: m.Empty,
    T.INIT_UPLOAD: m.InitUpload,
    T.COMPLETE_UPLOAD: m.CompleteUpload,
    T.CANCEL_UPLOAD: m.CancelUpload,
    T.DELETE_GAME: m.DeleteGame,
}

# Reply and push type -> payload model (what a Hub parses).
REPLY_MODELS: dict[MessageType, type[BaseModel]] = {
    T.PAIRING_REQUIRED: m.PairingRequired,
    T.PAIR_SUCCESS: m.PairSuccess,
    T.PAIR_FAILED: m.PairFailed,
    T.AGENT_STATUS: m.AgentStatus,
    T.PONG: m.Empty,
    T.INFO_RESPONSE: m.InfoResponse,
    T.CONFIG_RESPONSE: m.ConfigResponse,
    T.STEAM_USERS_RESPONSE: m.SteamUsersResponse,
    T.SHORTCUTS_RESPONSE: m.ShortcutsResponse,
    T.OPERATION_RESULT: m.OperationResult,
    T.ARTWORK_RESPONSE: m.ArtworkResponse,
    T.STEAM_RESPONSE: m.SteamResponse,
    T.UPLOAD_INIT_RESPONSE: m.UploadInitResponse,
    T.UPLOAD_CHUNK_RESPONSE: m.UploadChunkResponse,
    T.UPLOAD_PROGRESS: m.UploadProgress,
    T.OPERATION_EVENT: m.OperationEvent,
}

# The reply type that answers each request when it succeeds.
REPLY_TYPE: dict[MessageType, MessageType] = {
    T.PAIR_CONFIRM: T.PAIR_SUCCESS,
    T.PING: T.PONG,
    T.GET_INFO: T.INFO_RESPONSE,
    T.GET_CONFIG: T.CONFIG_RESPONSE,
    T.GET_STEAM_USERS: T.STEAM_USERS_RESPONSE,
    T.LIST_SHORTCUTS: T.SHORTCUTS_RESPONSE,
    T.CREATE_SHORTCUT: T.OPERATION_RESULT,
    T.DELETE_SHORTCUT: T.OPERATION_RESULT,
    T.APPLY_ARTWORK: T.ARTWORK_RESPONSE,
    T.RESTART_STEAM: T.STEAM_RESPONSE,
    T.INIT_UPLOAD: T.UPLOAD_INIT_RESPONSE,
    T.COMPLETE_UPLOAD: T.OPERATION_RESULT,
    T.CANCEL_UPLOAD: T.OPERATION_RESULT,
    T.DELETE_GAME: T.OPERATION_RESULT,
}

# Requests a connection may send before it is authenticated (D2).
UNAUTHENTICATED_TYPES = frozenset({T.HUB_CONNECTED, T.PAIR_CONFIRM, T.PING})

PUSH_TYPES = frozenset({T.UPLOAD_PROGRESS, T.OPERATION_EVENT, T.AGENT_STATUS})
