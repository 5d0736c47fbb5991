"""The ``radvlsm`` command line: reports, phantom data, clear errors with exit status 2."""

from __future__ import annotations

import json

from radvlsm.cli import main


def test_data_report_counts_classes(phantom_dir, capsys) -> None:
    assert main(["data-report", str(phantom_dir)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_images"] == 12 and report["n_skipped"] == 0
    assert sum(report["class_counts"].values()) == 12


def test_phantom_command(tmp_path, capsys) -> None:
    assert main(["phantom", "--out", str(tmp_path / "p"), "--n-images", "4"]) == 0
    assert (tmp_path / "p" / "bus_data.csv").is_file()


def test_bad_input_is_one_clear_line(tmp_path, caplog) -> None:
    assert main(["data-report", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in caplog.text
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    assert main(["predict", str(bad), "--variant", "tiny", "--weights", str(tmp_path / "none.pt")]) == 2
    assert "broken.png: not a readable image" in caplog.text


def test_corrupt_weights_are_refused_with_one_clear_line(phantom_dir, tmp_path, caplog) -> None:
    image = sorted((phantom_dir / "Images").glob("*.png"))[0]
    for name, content in (("empty.pt", b""), ("garbage.pt", b"PK\x03\x04 not a zip" * 50)):
        weights = tmp_path / name
        weights.write_bytes(content)
        caplog.clear()
        assert main(["predict", str(image), "--variant", "tiny", "--weights", str(weights)]) == 2
        assert f"{weights}: cannot read model weights" in caplog.text
        assert "Traceback" not in caplog.text
