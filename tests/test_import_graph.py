"""The layering, read from the source with `ast` (no import runs): which package may import which.

ctmc at the bottom (torch only); losses and samplers on ctmc, not on each other; models (plain nn.Modules, and the
loaders of checkpoints); data (no Lightning); evaluation (no Lightning, no commands); training (the fit path);
cli on top, one module per command with no command importing another; benchmarks import no command.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("ctmc", "losses", "samplers", "models", "data", "evaluation", "training", "cli", "benchmarks")
# package -> the packages (and third-party roots) it must never import
FORBIDDEN = {
    "ctmc": {"losses", "samplers", "models", "data", "evaluation", "training", "cli", "benchmarks", "lightning",
             "tiktoken", "numpy", "scipy"},
    "losses": {"samplers", "models", "data", "evaluation", "training", "cli", "benchmarks", "lightning", "tiktoken"},
    "samplers": {"losses", "models", "data", "evaluation", "training", "cli", "benchmarks", "lightning", "tiktoken"},
    "models": {"data", "evaluation", "training", "cli", "benchmarks", "lightning", "tiktoken"},
    "data": {"losses", "samplers", "models", "evaluation", "training", "cli", "benchmarks", "lightning"},
    "evaluation": {"training", "cli", "benchmarks", "lightning"},
    "training": {"cli", "benchmarks"},
    "benchmarks": {"cli"},
}
# The test toy chain's reference law is NumPy's seeded Dirichlet draw, imported inside the class (so `import ctmc`
# needs torch only); every enumerated reference of the sampler tests depends on that exact draw.
ALLOWED = {("ctmc/enumeration.py", "numpy")}
SHARED_CLI_MODULES = {"cli.arguments"}  # plumbing every command shares; cli.main is the dispatcher


def imports(path: Path) -> set[str]:
    """The absolute module names `path` imports (anywhere in the file, lazy imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


ENTRY_POINTS = {"training/__main__.py"}  # `python -m training` is the `lightning` command: it calls cli.main


def files(package: str) -> list[Path]:
    """The package's modules, without the entry-point shims."""
    return sorted(path for path in (ROOT / package).rglob("*.py") if str(path.relative_to(ROOT)) not in ENTRY_POINTS)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_never_imports_what_lies_above_it(package):
    for path in files(package):
        for name in imports(path):
            root = name.split(".")[0]
            if (str(path.relative_to(ROOT)), root) not in ALLOWED:
                assert root not in FORBIDDEN[package], f"{path.relative_to(ROOT)} imports {name}"


def test_no_command_module_imports_another():
    commands = {f"cli.{path.stem}" for path in files("cli")} - {"cli.__init__", "cli.main"} - SHARED_CLI_MODULES
    for path in files("cli"):
        if path.stem in ("main", "__init__"):
            continue
        used = {name for name in imports(path) if name.startswith("cli.")}
        own = f"cli.{path.stem}"
        others = {name for name in used if any(name == c or name.startswith(c + ".") for c in commands - {own})}
        assert not others, f"{path.relative_to(ROOT)} imports the command modules {sorted(others)}"


def test_benchmarks_import_no_command_module():
    for path in files("benchmarks"):
        assert not any(name.split(".")[0] == "cli" for name in imports(path)), path
