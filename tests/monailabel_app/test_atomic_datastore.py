"""The app's local datastore: checked uploads, no writes outside the folder, labels never half-written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi import HTTPException
from label_server import ROOT
from lib.datastores import IMAGE_PATTERNS, local_datastore
from lib.monailabel_fixes.atomic_datastore import AtomicLocalDatastore
from PIL import Image

CHILD = Path(__file__).with_name("label_save_child.py")


def all_files(folder: Path) -> set[str]:
    return {str(p) for p in folder.rglob("*")}


def png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


@pytest.fixture()
def store(tmp_path: Path, studies_from: Callable[[Path, int], Path]) -> AtomicLocalDatastore:
    return local_datastore(str(studies_from(tmp_path / "studies", 2)))


def first_image(store: AtomicLocalDatastore) -> tuple[str, tuple[int, int]]:
    image_id = sorted(store.list_images())[0]
    with Image.open(store.get_image_uri(image_id)) as im:
        return image_id, (im.height, im.width)


def test_local_datastore_is_the_atomic_one(store: AtomicLocalDatastore) -> None:
    assert isinstance(store, AtomicLocalDatastore)


def test_a_label_is_saved_and_replaced(store: AtomicLocalDatastore, tmp_path: Path) -> None:
    image_id, hw = first_image(store)
    old = png(tmp_path / "old.png", np.zeros(hw, np.uint8))
    new = np.zeros(hw, np.uint8)
    new[5:20, 5:30] = 1
    assert store.save_label(image_id, str(old), "final", {"user": "a"}) == image_id
    store.save_label(image_id, str(png(tmp_path / "new.png", new)), "final", {})
    saved = Path(store.get_label_uri(image_id, "final"))
    assert np.array_equal(np.asarray(Image.open(saved)), new)
    assert json.loads(Path(store._datastore_config_path).read_text())["objects"][image_id]["labels"]["final"]
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize(
    ("image_id", "tag", "status", "words"),
    [
        ("../../evil", "final", 422, "not a plain name"),
        ("%2e%2e%2fevil", "final", 422, "not a plain name"),
        ("/etc/passwd", "final", 422, "not a plain name"),
        (None, "../../../evil", 422, "label tag"),
        (None, "/tmp/evil", 422, "label tag"),
        ("no_such_image", "final", 404, "not in the datastore"),
    ],
)
def test_unsafe_label_names_are_refused_and_nothing_is_written(
    store: AtomicLocalDatastore, tmp_path: Path, image_id: str | None, tag: str, status: int, words: str
) -> None:
    real_id, hw = first_image(store)
    label = png(tmp_path / "l.png", np.ones(hw, np.uint8))
    before = all_files(tmp_path)
    with pytest.raises(HTTPException) as info:
        store.save_label(image_id or real_id, str(label), tag, {})
    assert info.value.status_code == status and words in info.value.detail
    assert all_files(tmp_path) == before


def test_bad_label_files_are_refused(store: AtomicLocalDatastore, tmp_path: Path) -> None:
    image_id, _ = first_image(store)
    empty, text, exe = tmp_path / "empty.png", tmp_path / "text.png", tmp_path / "label.exe"
    empty.write_bytes(b"")
    text.write_text("hello " * 50)
    exe.write_bytes(b"MZ")
    cases = {
        "but image": png(tmp_path / "small.png", np.ones((16, 16), np.uint8)),
        "zero bytes": empty,
        "not a readable image": text,
        "not accepted": exe,
    }
    for words, path in cases.items():
        with pytest.raises(HTTPException) as info:
            store.save_label(image_id, str(path), "final", {})
        assert info.value.status_code == 422 and words in info.value.detail, info.value.detail
    assert store.get_label_uri(image_id, "final") == ""


def test_image_uploads_are_checked(store: AtomicLocalDatastore, tmp_path: Path) -> None:
    good = png(tmp_path / "upload.png", (np.arange(64 * 48) % 255).astype(np.uint8).reshape(48, 64))
    assert store.add_image("new_case", str(good), {}) == "new_case"
    assert Path(store.get_image_uri("new_case")).parent == Path(store._datastore_path).resolve()
    broken = tmp_path / "broken.png"
    broken.write_bytes(good.read_bytes()[:100])
    before = all_files(tmp_path)
    for image_id, path, words in [
        ("../outside", good, "not a plain name"),
        ("ok", broken, "truncated or corrupt"),
        ("ok", tmp_path / "x.txt", "not accepted"),
    ]:
        with pytest.raises(HTTPException) as info:
            store.add_image(image_id, str(path), {})
        assert info.value.status_code == 422 and words in info.value.detail, info.value.detail
    assert all_files(tmp_path) == before


@pytest.mark.parametrize(("kind", "atomic"), [("atomic", True), ("plain", False)])
def test_a_kill_during_a_label_save_leaves_the_old_label_or_a_partial_one(
    tmp_path: Path, studies_from: Callable[[Path, int], Path], kind: str, atomic: bool
) -> None:
    """SIGKILL in the middle of writing: the app's datastore keeps the old label whole; MONAI Label's own
    LocalDatastore (``plain``, the control) is left with a partial file, which shows the test can tell."""
    studies = studies_from(tmp_path / "studies", 1)
    store = AtomicLocalDatastore(str(studies), IMAGE_PATTERNS)
    image_id, hw = first_image(store)
    store.save_label(image_id, str(png(tmp_path / "old.png", np.zeros(hw, np.uint8))), "final", {})
    target = Path(store.get_label_uri(image_id, "final"))
    old_bytes = target.read_bytes()
    rng = np.random.default_rng(0)
    new = png(tmp_path / "new.png", (rng.random(hw) > 0.5).astype(np.uint8))  # noisy: a long file
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(studies), image_id, str(new), kind],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = child.stdout.readline()
        assert line.strip() == "HALF", line + child.stderr.read()[-3000:]
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    content = target.read_bytes()
    if atomic:
        assert content == old_bytes
        with Image.open(target) as im:
            assert im.size == (hw[1], hw[0])
    else:
        assert content not in (old_bytes, new.read_bytes()), "the control should have been caught mid-write"
