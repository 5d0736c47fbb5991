"""Names and paths from requests: plain names pass, anything that could leave the datastore is refused."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lib.monailabel_fixes.safe_paths import check_inside, check_name, check_request_file, inside, is_upload

from radvlsm.errors import RadVLSMInputError

TRAVERSALS = [
    "../../etc/passwd",
    "..",
    ".",
    "a/b",
    "a\\b",
    "/etc/passwd",
    "%2e%2e%2fetc",
    "%252e%252e%252fpasswd",
    "..%2f..%2fx",
    ".hidden",
    "x\x00y",
    "line\nbreak",
    "",
    "   ",
]


@pytest.mark.parametrize("name", TRAVERSALS)
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(RadVLSMInputError, match="image id"):
        check_name(name, "image id")


@pytest.mark.parametrize("name", ["bus_0001-l", "1.2.840.10008.5.1", "case 7 (left)", "a%20b"])
def test_plain_names_pass(name: str) -> None:
    assert check_name(name, "image id") == name


def test_non_strings_and_long_names_are_refused() -> None:
    with pytest.raises(RadVLSMInputError, match="non-empty string"):
        check_name(5, "label tag")
    with pytest.raises(RadVLSMInputError, match="longer than"):
        check_name("a" * 500, "label tag")


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_an_accepted_name_never_leaves_its_folder(name: str) -> None:
    """Whatever text a client sends, a name that passes the check stays one component inside the folder."""
    folder = Path("/srv/studies")
    try:
        check_name(name, "image id")
    except RadVLSMInputError:
        return
    joined = Path(folder, name + ".png")
    assert joined.parent == folder and inside(joined, folder)


def test_paths_inside_and_outside(tmp_path: Path) -> None:
    (tmp_path / "studies").mkdir()
    assert check_inside(tmp_path / "studies" / "a.png", tmp_path / "studies", "image")
    with pytest.raises(RadVLSMInputError, match="outside the datastore"):
        check_inside(tmp_path / "studies" / ".." / "a.png", tmp_path / "studies", "image")
    link = tmp_path / "studies" / "link.png"
    link.symlink_to("/etc/hostname")
    with pytest.raises(RadVLSMInputError, match="outside the datastore"):
        check_inside(link, tmp_path / "studies", "image")


def test_request_files_must_be_uploads_or_in_the_datastore(tmp_path: Path) -> None:
    with tempfile.NamedTemporaryFile(suffix=".png") as upload:
        assert is_upload(upload.name)
        assert check_request_file(upload.name, [], "image") == upload.name
    studies = tmp_path / "studies"
    studies.mkdir()
    (studies / "a.png").write_bytes(b"x")
    assert check_request_file(str(studies / "a.png"), [studies], "image")
    for path in ("/etc/passwd", str(tmp_path / "elsewhere.png"), str(studies / ".." / "x.png")):
        with pytest.raises(RadVLSMInputError, match="outside the datastore"):
            check_request_file(path, [studies], "image")
    with tempfile.TemporaryDirectory() as sub:  # a folder under /tmp is not an upload
        assert not is_upload(str(Path(sub) / "tmpabc.png"))
