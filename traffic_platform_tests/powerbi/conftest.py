"""Fixtures for the Power BI project tests: the loaded project, the schema copy, broken copies."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from traffic_platform_tests.conftest import _unavailable

from .project import POWERBI, Project, load_project
from .schemas import SCHEMAS


@pytest.fixture(scope="session")
def project() -> Project:
    return load_project(POWERBI)


@pytest.fixture(scope="session")
def schemas_dir() -> Path:
    """Microsoft's schemas in <repo>/../shared/schemas/ (skip without them; fail when CI=true)."""
    if not SCHEMAS.is_dir():
        _unavailable(f"Microsoft's JSON schemas are not at {SCHEMAS}")
    return SCHEMAS


@pytest.fixture
def broken_copy(tmp_path: Path) -> Callable[..., Path]:
    """``broken_copy({"relative/file": (old, new), ...})``: a copy of powerbi/ with each ``old``
    text (which must occur) replaced by ``new``; returns the copy's root."""

    def make(edits: dict[str, tuple[str, str]]) -> Path:
        root = tmp_path / "powerbi"
        if not root.exists():
            shutil.copytree(POWERBI, root)
        for rel, (old, new) in edits.items():
            path = root / rel
            text = path.read_text(encoding="utf-8")
            assert old in text, f"{old!r} is not in {rel}: the mutation would test nothing"
            path.write_text(text.replace(old, new, 1), encoding="utf-8")
        return root

    return make


@pytest.fixture
def broken_project(broken_copy: Callable[..., Path]) -> Callable[..., Project]:
    """``broken_project({...})``: :func:`load_project` on a :func:`broken_copy`."""
    return lambda edits: load_project(broken_copy(edits))
