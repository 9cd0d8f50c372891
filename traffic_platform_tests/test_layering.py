"""The package's layering, checked from its source: who may import whom, and where Pillow opens bytes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "traffic_platform"

# Layer -> the layers (top-level modules or sub-packages) it may import from.
ALLOWED = {
    "domain": {"domain"},
    "detection": {"domain", "detection", "config"},
    "storage": {"domain", "storage", "config"},
    "dashboard": {"domain", "storage", "config", "dashboard"},
    "ingest": {"domain", "detection", "storage", "ingest", "config", "logs", "dashboard"},
    # orchestration may use ingest only to run the landing prefix through the ingest service
    "orchestration": {"domain", "detection", "storage", "orchestration", "config", "ingest", "dashboard"},
    # builds deployment artefacts from the package's files; imports none of its code
    "packaging": {"packaging"},
}
INGEST_FROM_ORCHESTRATION = {"landing.py", "resources.py"}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def _imported_layers(path: Path) -> set[str]:
    """The first component below ``traffic_platform`` of everything ``path`` imports."""
    here = path.relative_to(PACKAGE).parts[:-1]  # the package path of the module
    layers = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(here[: len(here) - (node.level - 1)]) if node.level > 1 else list(here)
                target = base + (node.module.split(".") if node.module else [])
                if not target:  # "from . import x" at the top of the package
                    target = [alias.name for alias in node.names]
            elif node.module and node.module.split(".")[0] == "traffic_platform":
                target = node.module.split(".")[1:]
            else:
                continue
            if target:
                layers.add(target[0].removesuffix(".py"))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "traffic_platform" and len(parts) > 1:
                    layers.add(parts[1])
    return layers


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_dependencies_point_one_way(layer):
    offenders = {}
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        if "migrations" in path.parts:
            continue
        allowed = set(ALLOWED[layer])
        if layer == "orchestration" and path.name not in INGEST_FROM_ORCHESTRATION:
            allowed.discard("ingest")
        bad = _imported_layers(path) - allowed
        if bad:
            offenders[str(path.relative_to(PACKAGE))] = sorted(bad)
    assert not offenders, f"imports across the layering: {offenders}"


def test_only_the_image_module_opens_image_bytes():
    openers = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "open"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "Image"
            ):
                openers.append(str(path.relative_to(PACKAGE)))
    assert sorted(set(openers)) == ["domain/images.py"]


def test_the_checker_sees_relative_and_absolute_imports(tmp_path):
    module = PACKAGE / "domain" / "captures.py"
    assert _imported_layers(module) == {"domain"}
    assert "config" in _imported_layers(PACKAGE / "ingest" / "service.py")
    assert "ingest" in _imported_layers(PACKAGE / "orchestration" / "landing.py")
