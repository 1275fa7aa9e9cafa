"""init_upload refusals of D6: each is a 400 with a reason, and nothing is written to disk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from capydeploy.agent.transfer import TransferService
from capydeploy.protocol.errors import ErrorCode, ProtocolError
from capydeploy.protocol.messages import InitUpload
from tests.agent.transfer.conftest import ServiceFactory
from tests.agent.transfer.transfer_helpers import HUB, listing, make_request, upload


def raw_request(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "config": {"gameName": "Celeste", "executable": "Celeste.exe"},
        "totalSize": 15,
        "files": [{"relativePath": "Celeste.exe", "size": 5}, {"relativePath": "data/game.pak", "size": 10}],
    }
    for key, value in changes.items():
        if key in ("gameName", "executable", "installPath"):
            raw["config"][key] = value
        else:
            raw[key] = value
    return raw


@pytest.mark.parametrize(
    "changes",
    [
        {"gameName": ""},
        {"gameName": "."},
        {"gameName": ".."},
        {"gameName": "a/b"},
        {"gameName": "a\\b"},
        {"gameName": "nul\x00"},
        {"gameName": "tab\there"},
        {"gameName": "é" * 128},  # 256 bytes
        {"gameName": ".capydeploy"},
        {"files": [{"relativePath": "/etc/passwd", "size": 15}]},
        {"files": [{"relativePath": "../x", "size": 15}]},
        {"files": [{"relativePath": "a//b", "size": 15}]},
        {"files": [{"relativePath": "a/./b", "size": 15}]},
        {"files": [{"relativePath": "a\\b", "size": 15}]},
        {"files": [{"relativePath": "C:/x", "size": 15}]},
        {"files": [{"relativePath": "a", "size": 5}, {"relativePath": "a", "size": 10}]},
        {"files": [{"relativePath": "a", "size": 5}, {"relativePath": "a/b", "size": 10}]},
        {"files": [{"relativePath": "a", "size": -1}]},
        {"totalSize": 16},
        {"executable": "missing.exe"},
        {"installPath": "relative/path"},
    ],
)
def test_the_model_rejects_malformed_requests(changes: dict[str, Any]) -> None:
    """These never reach the service: parsing the payload fails (the connection answers 400)."""
    with pytest.raises(ValidationError):
        InitUpload.model_validate(raw_request(**changes))


async def rejected(service: TransferService, request: InitUpload, tmp_path: Path) -> ProtocolError:
    before = listing(tmp_path)
    with pytest.raises(ProtocolError) as caught:
        await service.init_upload(HUB, request)
    assert caught.value.code == ErrorCode.BAD_REQUEST
    assert listing(tmp_path) == before, "a rejected init_upload wrote to disk"
    return caught.value


async def test_install_path_outside_the_roots(service: TransferService, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    error = await rejected(service, make_request("G", {"f": b"x"}, install_path=str(elsewhere)), tmp_path)
    assert "outside the allowed install roots" in error.message


async def test_install_path_escaping_through_a_symlink(
    service: TransferService, games: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (games / "sneaky").symlink_to(outside)
    error = await rejected(
        service, make_request("G", {"f": b"x"}, install_path=str(games / "sneaky")), tmp_path
    )
    assert "outside the allowed install roots" in error.message
    # Also through `..` after a symlink.
    (games / "up").symlink_to(tmp_path)
    await rejected(
        service, make_request("G", {"f": b"x"}, install_path=str(games / "up" / "outside")), tmp_path
    )


async def test_a_symlink_into_the_root_is_accepted(
    make_service: ServiceFactory, games: Path, tmp_path: Path
) -> None:
    service = make_service()
    (games / "Sub").mkdir()
    alias = tmp_path / "alias"
    alias.symlink_to(games / "Sub")
    path = await upload(service, "G", {"f": b"x"}, install_path=str(alias))
    assert path == games / "Sub" / "G"
    assert (path / "f").read_bytes() == b"x"


async def test_install_path_inside_the_agents_folder(
    service: TransferService, games: Path, tmp_path: Path
) -> None:
    (games / ".capydeploy" / "staging").mkdir(parents=True)
    request = make_request("G", {"f": b"x"}, install_path=str(games / ".capydeploy" / "staging"))
    error = await rejected(service, request, tmp_path)
    assert "Agent's own folder" in error.message


async def test_install_path_that_is_a_file(service: TransferService, games: Path, tmp_path: Path) -> None:
    (games / "file").write_bytes(b"")
    error = await rejected(
        service, make_request("G", {"f": b"x"}, install_path=str(games / "file")), tmp_path
    )
    assert "not a folder" in error.message


async def test_game_folder_that_is_a_symlink_pointing_outside(
    service: TransferService, games: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "victim"
    outside.mkdir()
    (outside / "precious").write_bytes(b"keep me")
    (games / "Evil").symlink_to(outside)
    error = await rejected(service, make_request("Evil", {"f": b"x"}), tmp_path)
    assert "symbolic link" in error.message
    assert (outside / "precious").read_bytes() == b"keep me"


async def test_game_folder_symlink_inside_the_root_is_replaced_not_followed(
    service: TransferService, games: Path
) -> None:
    (games / "Real").mkdir()
    (games / "Real" / "old").write_bytes(b"old")
    (games / "Game").symlink_to(games / "Real")
    path = await upload(service, "Game", {"new": b"new"})
    assert not path.is_symlink()
    assert (path / "new").read_bytes() == b"new"
    assert (games / "Real" / "old").read_bytes() == b"old"


async def test_insufficient_space(make_service: ServiceFactory, tmp_path: Path) -> None:
    service = make_service(free_space=lambda _root: 100)
    error = await rejected(service, make_request("Big", {"f": bytes(101), "g": b""}), tmp_path)
    assert error.message.startswith("insufficient space")
    assert "need 101 bytes, 100 free" in error.message
    accepted = make_service(free_space=lambda _root: 101)
    reply = await accepted.init_upload(HUB, make_request("Big", {"f": bytes(101)}))
    assert reply.upload_id


async def test_paths_too_long_for_the_device(service: TransferService, tmp_path: Path) -> None:
    long_path = "/".join(["d" * 200] * 20)  # ~4 KiB: valid for the protocol, too long below the root
    error = await rejected(service, make_request("G", {long_path: b"x"}), tmp_path)
    assert "too long" in error.message


async def test_second_allowed_root(make_service: ServiceFactory, games: Path, tmp_path: Path) -> None:
    sd_card = tmp_path / "sdcard"
    sd_card.mkdir()
    service = make_service(allowed_roots=[games, sd_card])
    path = await upload(service, "G", {"f": b"x"}, install_path=str(sd_card))
    assert path == sd_card / "G"
    assert service.resolve_install_root(None) == games
    with pytest.raises(ProtocolError):
        service.resolve_install_root(str(tmp_path))


async def test_install_root_is_created_when_missing(make_service: ServiceFactory, tmp_path: Path) -> None:
    root = tmp_path / "not-yet"
    service = make_service(install_dir=root)
    path = await upload(service, "G", {"f": b"x"})
    assert os.fspath(path) == os.fspath(root / "G")
