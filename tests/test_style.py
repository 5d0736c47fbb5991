"""The repository stays ruff clean (lint and format)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]])
def test_ruff(args: list[str]) -> None:
    ruff = shutil.which("ruff")
    assert ruff, "ruff is installed by scripts/install.sh (the dev extra)"
    result = subprocess.run([ruff, *args], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]


# Import name -> distribution name where they differ (others: the import name with "_" as "-").
DISTRIBUTION_OF = {
    "PIL": "pillow",
    "yaml": "pyyaml",
    "radiomics": "pyradiomics-bhklab",
    "ignite": "pytorch-ignite",
    "open_clip": "open-clip-torch",
    "nrrd": "pynrrd",
}


def _third_party_imports(folder: Path, own: set[str]) -> dict[str, str]:
    """Top-level third-party modules imported anywhere under ``folder`` (lazy imports too) -> one file using it."""
    import ast
    import sys

    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in own:
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def _requirements(section: str, key: str) -> set[str]:
    import configparser

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    config = configparser.ConfigParser(comment_prefixes=("#",), inline_comment_prefixes=None)
    config.read(ROOT / "setup.cfg")
    lines = [line.strip() for line in config[section][key].splitlines()]
    return {canonicalize_name(Requirement(line).name) for line in lines if line and not line.startswith("#")}


def _distribution(module: str) -> str:
    from packaging.utils import canonicalize_name

    return canonicalize_name(DISTRIBUTION_OF.get(module, module.replace("_", "-")))


def test_install_requires_is_exactly_what_the_library_imports() -> None:
    imported = {_distribution(m): f for m, f in _third_party_imports(ROOT / "radvlsm", {"radvlsm"}).items()}
    required = _requirements("options", "install_requires")
    missing = {d: f for d, f in imported.items() if d not in required}
    assert not missing, f"imported by radvlsm/ but not in install_requires: {missing}"
    assert not required - set(imported), f"in install_requires but not imported by radvlsm/: {required - set(imported)}"


def test_the_app_extra_covers_what_the_app_imports() -> None:
    imported = {
        _distribution(m): f for m, f in _third_party_imports(ROOT / "monailabel_app", {"radvlsm", "lib"}).items()
    }
    available = _requirements("options", "install_requires") | _requirements("options.extras_require", "app")
    missing = {d: f for d, f in imported.items() if d not in available}
    assert not missing, f"imported by monailabel_app/ but in neither install_requires nor the app extra: {missing}"
