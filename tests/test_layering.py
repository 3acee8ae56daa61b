"""Layering of the package, checked on the source with ``ast`` (nothing is imported).

The library does not depend on its command line: no module outside ``swifthydra/cli/`` imports
``swifthydra.cli`` (at the top or inside a function), except the two deprecated shims that
re-export the commands under their old names. What the command line and the library share lives
in the library (:mod:`swifthydra.tabular.model`).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "swifthydra"
CLI = "swifthydra.cli"
#: deprecated shims kept for old imports (``from swifthydra.cli_model import ...``)
ALLOWED = {"swifthydra.cli_model", "swifthydra.cli_evaluate"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(module: str, path: Path) -> set[str]:
    """Every module ``path`` imports anywhere (top level, functions, ``TYPE_CHECKING`` blocks),
    absolute names; ``from a import b`` counts as ``a`` and ``a.b`` (``b`` may be a submodule).
    ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name count too."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


def _is_cli(name: str) -> bool:
    return name == CLI or name.startswith(CLI + ".")


def _cli_importers() -> dict[str, list[str]]:
    out = {}
    for module, path in _modules().items():
        if _is_cli(module):
            continue
        hits = sorted(n for n in _imports(module, path) if _is_cli(n))
        if hits:
            out[module] = hits
    return out


def test_the_checker_sees_imports():
    """Not vacuous: the modules are found, and the shims' imports of the command line are seen."""
    modules = _modules()
    assert {"swifthydra", "swifthydra.tabular.model", "swifthydra.cli._table", "swifthydra.distributed.ray"} <= set(modules)
    importers = _cli_importers()
    assert "swifthydra.cli_model" in importers and "swifthydra.cli._table" in importers["swifthydra.cli_model"]
    assert "swifthydra.tabular.model" in _imports("swifthydra.cli._table", modules["swifthydra.cli._table"])


def test_no_library_module_imports_the_command_line():
    upward = {m: hits for m, hits in _cli_importers().items() if m not in ALLOWED}
    assert not upward, (
        "library modules import the command line (move what they need into the library, e.g. "
        f"swifthydra.tabular.model): {upward}"
    )


def test_relative_imports_are_resolved(tmp_path):
    """``from ..cli import x`` inside the package is caught like ``from swifthydra.cli import x``;
    so are ``import swifthydra.cli.score`` and ``importlib.import_module("swifthydra.cli")``."""
    probe = tmp_path / "_probe.py"
    probe.write_text(
        "import importlib\n"
        "from ..cli._table import read_table_state\n"
        "from .. import cli\n"
        "def f():\n"
        "    import swifthydra.cli.score\n"
        "    return importlib.import_module('swifthydra.cli')\n",
        encoding="utf-8",
    )
    found = _imports("swifthydra.distributed._probe", probe)
    assert {"swifthydra.cli._table.read_table_state", "swifthydra.cli", "swifthydra.cli.score"} <= found
    assert "swifthydra.distributed.cli" not in found


def _imports_module(importer: str, target: str) -> bool:
    modules = _modules()
    names = _imports(importer, modules[importer])
    return target in names or any(n.startswith(target + ".") for n in names)


def test_no_import_cycle_between_bench_gains_and_report():
    gains, report = "swifthydra.bench.gains", "swifthydra.bench.report"
    assert not (_imports_module(gains, report) and _imports_module(report, gains)), (
        f"{gains} and {report} import each other"
    )


def test_every_test_named_slow_in_conftest_exists():
    """The fast tier's list of slow tests (tests/conftest.py) names tests that exist: a renamed
    test would otherwise silently join the fast tier."""
    from conftest import SLOW_MODULES, SLOW_TESTS

    tests = Path(__file__).resolve().parent
    for module in SLOW_MODULES:
        assert (tests / module).is_file(), module
    for name in SLOW_TESTS:
        module, function = name.split("::")
        tree = ast.parse((tests / module).read_text())
        assert function in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, name


def test_no_two_modules_import_each_other():
    """No import cycle between two modules (issue 25), at the top or inside functions; a package's
    ``__init__`` re-exporting its own submodules is the one allowed pair."""
    modules = _modules()
    imports = {m: {n for n in _imports(m, p) if n in modules and n != m} for m, p in modules.items()}
    pairs = sorted({tuple(sorted((a, b))) for a, found in imports.items() for b in found if a in imports[b]})
    allowed = [(a, b) for a, b in pairs if b.startswith(a + ".") and modules[a].name == "__init__.py"]
    assert [p for p in pairs if p not in allowed] == []
    assert len(modules) > 80 and pairs  # not vacuous: the whole package is seen, and the allowed pair
