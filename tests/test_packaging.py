"""What a wheel carries: every data file the package reads at run time.

A file left out of ``package-data`` works in a checkout (editable install) and
breaks only for people who ``pip install`` vidsr, so this is checked here.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _packaged_files() -> set[Path]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    package_data = config["tool"]["setuptools"]["package-data"]
    files: set[Path] = set()
    for package, patterns in package_data.items():
        root = REPO.joinpath(*package.split("."))
        for pattern in patterns:
            files.update(p for p in root.glob(pattern) if p.is_file())
    return files


def test_every_data_file_of_the_package_goes_into_the_wheel():
    data_files = {
        p for p in (REPO / "vidsr").rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }
    assert data_files, "no data files found: the test is looking in the wrong place"
    missing = sorted(str(p.relative_to(REPO)) for p in data_files - _packaged_files())
    assert not missing, f"not in pyproject's package-data: {missing}"


def test_the_model_cards_and_the_default_models_weights_are_among_them():
    packaged = {str(p.relative_to(REPO)) for p in _packaged_files()}
    assert "vidsr/weights/cards.toml" in packaged
    assert "vidsr/weights/vidsr_compact_x2.safetensors" in packaged
    assert any(name.startswith("vidsr/weights/licenses/") for name in packaged)
