"""Atomic writes: a failure at any point leaves the old file and no temporary file behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from radvlsm import atomic_files
from radvlsm.atomic_files import TMP_PREFIX, atomic_copy, atomic_write, atomic_write_text


def test_copy_and_text_replace_the_target(tmp_path: Path) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(b"new" * 1000)
    target = tmp_path / "dst.bin"
    target.write_bytes(b"old")
    atomic_copy(source, target)
    assert target.read_bytes() == b"new" * 1000
    atomic_write_text(tmp_path / "a.json", '{"a": 1}')
    assert (tmp_path / "a.json").read_text() == '{"a": 1}'
    assert not list(tmp_path.glob(TMP_PREFIX + "*"))
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)


def test_a_crash_mid_copy_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(b"n" * 10000)
    target = tmp_path / "dst.bin"
    target.write_bytes(b"old content")

    def half_then_crash(src, dst, length: int = 0) -> None:
        dst.write(src.read(5000))
        raise OSError("disk unplugged")

    monkeypatch.setattr(shutil, "copyfileobj", half_then_crash)
    with pytest.raises(OSError, match="disk unplugged"):
        atomic_copy(source, target)
    assert target.read_bytes() == b"old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst.bin", "src.bin"]


def test_a_failed_rename_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "dst.txt"
    target.write_text("old")

    def no_replace(src: str, dst: str) -> None:
        raise OSError("rename failed")

    monkeypatch.setattr(atomic_files.os, "replace", no_replace)
    with pytest.raises(OSError, match="rename failed"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst.txt"]


def test_bad_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"), atomic_write(tmp_path / "x", "a"):
        pass
