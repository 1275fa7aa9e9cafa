"""Steam users of a root: `userdata/<accountid>/` folders, named from `config/loginusers.vdf`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import vdf

from ..protocol.constants import STEAMID64_BASE, UINT32_MAX

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoginUser:
    """One entry of loginusers.vdf."""

    account_id: int
    persona_name: str | None
    account_name: str | None
    most_recent: bool


@dataclass(frozen=True)
class SteamUserDir:
    """A user that has a `userdata/<accountid>/config` folder in one Steam root."""

    root: Path
    account_id: int
    persona_name: str | None = None
    account_name: str | None = None
    most_recent: bool = False

    @property
    def steam_id64(self) -> int:
        return self.account_id + STEAMID64_BASE

    @property
    def display_name(self) -> str:
        """PersonaName, else AccountName, else the account id (a user need not be in loginusers.vdf)."""
        return self.persona_name or self.account_name or str(self.account_id)

    @property
    def userdata(self) -> Path:
        return self.root / "userdata" / str(self.account_id)

    @property
    def config_dir(self) -> Path:
        return self.userdata / "config"

    @property
    def shortcuts_path(self) -> Path:
        return self.config_dir / "shortcuts.vdf"

    @property
    def grid_dir(self) -> Path:
        return self.config_dir / "grid"


def _field(entry: Mapping[str, object], name: str) -> str | None:
    """A string field of a text-VDF map, its key matched case-insensitively (writers differ)."""
    wanted = name.casefold()
    for key, value in entry.items():
        if key.casefold() == wanted and isinstance(value, str):
            return value
    return None


def read_login_users(root: Path) -> dict[int, LoginUser]:
    """loginusers.vdf by account id; an unreadable or missing file gives no names, never an error."""
    path = root / "config" / "loginusers.vdf"
    try:
        document = vdf.loads(path.read_text(encoding="utf-8", errors="replace"))
    except FileNotFoundError:
        return {}
    except (OSError, SyntaxError, ValueError) as error:
        log.warning("cannot read %s (%s); Steam users are listed without names", path, error)
        return {}
    users_map: Mapping[str, object] = {}
    for key, value in document.items():
        if key.casefold() == "users" and isinstance(value, Mapping):
            users_map = value
            break
    result: dict[int, LoginUser] = {}
    for steam_id, entry in users_map.items():
        if not (steam_id.isdigit() and isinstance(entry, Mapping)):
            continue
        account_id = int(steam_id) - STEAMID64_BASE
        if not 0 < account_id <= UINT32_MAX:
            continue
        result[account_id] = LoginUser(
            account_id=account_id,
            persona_name=_field(entry, "PersonaName"),
            account_name=_field(entry, "AccountName"),
            most_recent=_field(entry, "MostRecent") == "1",
        )
    return result


def list_users(root: Path) -> list[SteamUserDir]:
    """The users of one root, sorted by account id."""
    userdata = root / "userdata"
    try:
        folders = list(userdata.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    logins = read_login_users(root)
    users: list[SteamUserDir] = []
    for folder in folders:
        name = folder.name
        if not (name.isascii() and name.isdigit()) or name != str(int(name)):
            continue
        # `0` is Steam's anonymous/offline placeholder; non-numeric names are not accounts.
        if not 0 < int(name) <= UINT32_MAX:
            continue
        if not (folder / "config").is_dir():
            continue
        account_id = int(name)
        login = logins.get(account_id)
        users.append(
            SteamUserDir(
                root=root,
                account_id=account_id,
                persona_name=login.persona_name if login else None,
                account_name=login.account_name if login else None,
                most_recent=login.most_recent if login else False,
            )
        )
    users.sort(key=lambda user: user.account_id)
    return users
