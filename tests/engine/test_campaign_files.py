"""A campaign file that cannot be read: one error naming the file and what to do, of the
built-in class callers already catch."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from engine.campaign import load_campaign
from engine.core import Engine
from engine.errors import FileAccessError, MissingFileError, NboError, NotAFileError

RENEWAL = Path(__file__).resolve().parents[2] / "examples" / "renewal.toml"
HINT = "pass the path of a campaign TOML file (examples/renewal.toml is a complete example)"


def test_missing_campaign_file(tmp_path: Path) -> None:
    path = tmp_path / "renewl.toml"
    with pytest.raises(MissingFileError) as info:
        load_campaign(path)
    assert str(info.value) == f"{path}: expected a campaign TOML file, got no such file; {HINT}"
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, NboError)
    assert info.value.errno == errno.ENOENT and info.value.filename == str(path)
    with pytest.raises(FileNotFoundError):  # what callers already catch
        Engine.from_config(path, data_dir=tmp_path / "data")


def test_campaign_path_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(NotAFileError) as info:
        load_campaign(tmp_path)
    assert str(info.value) == f"{tmp_path}: expected a campaign TOML file, got a directory; {HINT}"
    assert isinstance(info.value, IsADirectoryError)


def test_unreadable_campaign_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.toml"
    path.write_text(RENEWAL.read_text())

    def denied(self: Path) -> bytes:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)  # chmod does not stop root
    with pytest.raises(FileAccessError) as info:
        load_campaign(path)
    assert str(info.value) == (
        f"{path}: expected a campaign TOML file, got a file this process may not read; {HINT}"
    )
    assert isinstance(info.value, PermissionError) and info.value.errno == errno.EACCES


def test_other_read_errors_pass_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Path) -> bytes:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(Path, "read_bytes", broken)
    with pytest.raises(OSError, match=r"^\[Errno 5\] Input/output error$") as info:
        load_campaign(tmp_path / "x.toml")
    assert not isinstance(info.value, NboError)
