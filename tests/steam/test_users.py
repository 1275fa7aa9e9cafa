"""Steam users: userdata folders and their names from loginusers.vdf."""

from __future__ import annotations

from pathlib import Path

import vdf

from capydeploy.steam.users import list_users, read_login_users

STEAMID = 76561198012345678
ACCOUNT = 52079950


def _user(root: Path, name: str, config: bool = True) -> None:
    folder = root / "userdata" / name
    folder.mkdir(parents=True)
    if config:
        (folder / "config").mkdir()


def _loginusers(root: Path, users: dict[str, dict[str, str]], key: str = "users") -> None:
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "config/loginusers.vdf").write_text(vdf.dumps({key: users}, pretty=True), encoding="utf-8")


def test_users_and_names(tmp_path: Path) -> None:
    _user(tmp_path, str(ACCOUNT))
    _user(tmp_path, "7")
    _user(tmp_path, "0")  # Steam's anonymous placeholder
    _user(tmp_path, "anonymous")
    _user(tmp_path, "0099")  # not a canonical account folder name
    _user(tmp_path, "123", config=False)
    (tmp_path / "userdata/999").write_text("a file, not a folder")
    _loginusers(
        tmp_path,
        {
            str(STEAMID): {"accountname": "gamer_login", "personaname": "Gamer", "mostrecent": "1"},
            str(76561197960265728 + 7): {"AccountName": "second"},
            "not-a-number": {"PersonaName": "ignored"},
        },
        key="Users",
    )
    users = list_users(tmp_path)
    assert [user.account_id for user in users] == [7, ACCOUNT]
    second, gamer = users
    assert gamer.steam_id64 == STEAMID
    assert gamer.display_name == "Gamer"
    assert gamer.most_recent is True
    assert gamer.shortcuts_path == tmp_path / "userdata" / str(ACCOUNT) / "config/shortcuts.vdf"
    assert gamer.grid_dir == tmp_path / "userdata" / str(ACCOUNT) / "config/grid"
    assert second.display_name == "second"
    assert second.most_recent is False


def test_a_user_without_a_login_entry_still_exists(tmp_path: Path) -> None:
    _user(tmp_path, str(ACCOUNT))
    users = list_users(tmp_path)
    assert [(user.account_id, user.display_name) for user in users] == [(ACCOUNT, str(ACCOUNT))]


def test_a_corrupt_loginusers_file_only_loses_names(tmp_path: Path) -> None:
    _user(tmp_path, str(ACCOUNT))
    (tmp_path / "config").mkdir()
    (tmp_path / "config/loginusers.vdf").write_text('"users"\n{\n "123" {', encoding="utf-8")
    assert read_login_users(tmp_path) == {}
    assert [user.display_name for user in list_users(tmp_path)] == [str(ACCOUNT)]


def test_no_userdata(tmp_path: Path) -> None:
    assert list_users(tmp_path) == []
