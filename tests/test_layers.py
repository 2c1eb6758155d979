"""The package layering: no module imports from a package above its own, and files stay small
enough to read in one sitting (STYLE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import tripletlab

SOURCE = Path(tripletlab.__file__).parent

# Lowest first. A package may import from its own layer's other packages only where listed in
# _SAME_LAYER, and from any lower layer.
LAYERS = [
    {"config", "utils"},
    {"runs"},
    {"index"},
    {"data", "losses", "models"},
    {"evaluation", "search"},
    {"training", "export"},
    {"viz", "keras", "serve"},
    {"cli"},
    {"__main__"},  # `python -m tripletlab`
]
_SAME_LAYER: set[tuple[str, str]] = set()


def _layer(package: str) -> int:
    return next(i for i, members in enumerate(LAYERS) if package in members)


def _imports() -> list[tuple[str, str, str]]:
    """(importing package, imported package, file) for every tripletlab import between two."""
    found = []
    for path in SOURCE.rglob("*.py"):
        relative = path.relative_to(SOURCE)
        package = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        if package == "__init__":
            continue  # the top-level package re-exports the public API
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "tripletlab" and len(parts) > 1 and parts[1] != package:
                    found.append((package, parts[1], str(relative)))
    return found


def test_every_package_has_a_layer():
    packages = {p.name for p in SOURCE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in SOURCE.glob("*.py") if p.stem != "__init__"}
    assert packages | modules == set().union(*LAYERS)


def test_no_import_reaches_up_a_layer():
    upward = [
        f"{where}: {package} -> {target}"
        for package, target, where in _imports()
        if _layer(target) > _layer(package)
        or (_layer(target) == _layer(package) and (package, target) not in _SAME_LAYER)
    ]
    assert upward == []


def test_source_files_stay_readable_in_one_sitting():
    long = {str(p.relative_to(SOURCE)): n for p in SOURCE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 300}  # fmt: skip
    assert long == {}
