"""The shape of the package: layers that import only downward, short functions, and runtime
imports that are all declared dependencies. Read from the source with `ast`; nothing runs."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIRS: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]

# Bottom to top. A module may import its own unit and any unit of a lower layer, nothing else:
# units on one layer (eval and server) do not import each other.
LAYERS: list[dict[str, tuple[str, ...]]] = [
    {
        "foundation": (
            "verbatim",
            "verbatim.records",
            "verbatim.settings",
            "verbatim.errors",
            "verbatim.arrays",
        )
    },
    {"reading": ("verbatim.ingest",)},
    {"indexing": ("verbatim.index",), "feedback store": ("verbatim.feedback",)},
    {"answering": ("verbatim.answer", "verbatim.calibrate", "verbatim.citations")},
    {"engine": ("verbatim.engine",)},
    {"watching": ("verbatim.watch",)},
    {"evaluation": ("verbatim.eval",), "serving": ("verbatim.server",)},
    {"command line": ("verbatim.cli", "verbatim.__main__")},
]
MAX_FUNCTION_LINES = 60


def shipped_modules() -> dict[str, Path]:
    """Every module of the installed package, by dotted name, from the package-dir mapping."""
    modules = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            name = package if path.name == "__init__.py" else f"{package}.{path.stem}"
            modules[name] = path
    return modules


def unit_of(module: str) -> tuple[int, str]:
    """(layer, unit) of a module: the unit with the longest prefix that covers it."""
    best: tuple[int, str, str] | None = None
    for layer, units in enumerate(LAYERS):
        for unit, prefixes in units.items():
            for prefix in prefixes:
                covers = module == prefix or module.startswith(prefix + ".")
                if covers and (best is None or len(prefix) > len(best[2])):
                    best = (layer, unit, prefix)
    if best is None:
        raise LookupError(f"{module} is on no layer; add it to LAYERS in {__file__}")
    return best[0], best[1]


@functools.cache
def parsed(path: Path) -> ast.Module:
    """A source file's tree, parsed once for every check here."""
    return ast.parse(path.read_text(encoding="utf-8"))


def imported(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, inside functions too."""
    found = []
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
    return found


def test_every_module_is_on_a_layer():
    modules = shipped_modules()
    assert "verbatim.index.generations" in modules and "verbatim.server" in modules
    for name in modules:
        unit_of(name)


def test_imports_run_down_the_layers():
    upward = []
    for name, path in shipped_modules().items():
        layer, unit = unit_of(name)
        for line, target in imported(path):
            if target != "verbatim" and not target.startswith("verbatim."):
                continue
            to_layer, to_unit = unit_of(target)
            if to_unit != unit and to_layer >= layer:
                upward.append(
                    f"{path.relative_to(ROOT)}:{line} ({unit}) imports {target} ({to_unit})"
                )
    assert not upward, "\n".join(upward)


def test_the_layer_check_catches_an_upward_import(tmp_path):
    """The check above is not vacuous: an index module importing the engine is caught."""
    layer, unit = unit_of("verbatim.index.generations")
    assert (layer, unit) == (2, "indexing")
    to_layer, to_unit = unit_of("verbatim.engine")
    assert to_unit != unit and to_layer >= layer
    source = tmp_path / "bad.py"
    source.write_text("def f():\n    from verbatim.engine import open_engine\n")
    assert imported(source) == [(2, "verbatim.engine")]


def functions(path: Path):
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def test_functions_are_short():
    """Every function of the shipped code (benchmarks and scripts included), docstring included."""
    scripts = [*sorted((ROOT / "scripts").glob("*.py")), *sorted((ROOT / "bench").glob("*.py"))]
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} is {length} lines"
        for path in [*shipped_modules().values(), *scripts]
        for node in functions(path)
        if (length := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES  # type: ignore[operator]
    ]
    assert not long, "\n".join(long)


def _distribution(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def declared(extra: str | None = None) -> set[str]:
    project = PYPROJECT["project"]
    requirements = project["optional-dependencies"][extra] if extra else project["dependencies"]
    return {_distribution(r) for r in requirements}


# Imported only where an extra is asked for: a benchmark (`make bench` installs it), the Qdrant
# store (VERBATIM_STORE=qdrant), ingest on Ray (`verbatim ingest --ray`) and the eval curve.
EXTRA_IMPORTS = {"txtai": "bench", "qdrant_client": "qdrant", "ray": "ray", "matplotlib": "plot"}


def test_runtime_imports_are_declared_dependencies():
    """`pip install .` alone gives every module the packages it imports."""
    providers = importlib.metadata.packages_distributions()
    runtime = declared()
    missing = []
    for path in shipped_modules().values():
        for line, target in imported(path):
            top = target.split(".")[0]
            if top in sys.stdlib_module_names or top == "verbatim" or top == "__future__":
                continue
            if top in EXTRA_IMPORTS:
                assert _distribution(top) in declared(EXTRA_IMPORTS[top])
                continue
            dists = {d.lower().replace("_", "-") for d in providers.get(top, [])}
            if not dists & runtime:
                missing.append(f"{path.relative_to(ROOT)}:{line} imports {top} ({dists or '?'})")
    assert not missing, "\n".join(missing)


def imported_on_import(path: Path) -> list[tuple[int, str]]:
    """(line, module) of the imports that run when the file is imported: at its top level and in
    class bodies, `if`, `try` and `with` blocks there; not in functions or `if TYPE_CHECKING:`."""
    found: list[tuple[int, str]] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.extend((node.lineno, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.append((node.lineno, node.module))
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
            elif isinstance(node, ast.If | ast.With | ast.ClassDef):
                visit(node.body)
                visit(getattr(node, "orelse", []))
            elif isinstance(node, ast.Try):
                visit([*node.body, *node.orelse, *node.finalbody])
                for handler in node.handlers:
                    visit(handler.body)

    visit(parsed(path).body)
    return found


def test_no_module_imports_an_extra_when_imported():
    """Importing any module of the package imports no extra: each is imported inside the
    function that needs it, so the default path never loads Qdrant's client or Ray (the slow
    suite also checks this in a child interpreter; `make test` installs without extras)."""
    early = [
        f"{path.relative_to(ROOT)}:{line} imports {target} when imported"
        for path in shipped_modules().values()
        for line, target in imported_on_import(path)
        if target.split(".")[0] in EXTRA_IMPORTS
    ]
    assert not early, "\n".join(early)


def test_the_import_time_reading_is_not_vacuous(tmp_path):
    source = tmp_path / "mixed.py"
    source.write_text(
        "import ray\ntry:\n    import qdrant_client\nexcept ImportError:\n    pass\n"
        "if TYPE_CHECKING:\n    import txtai\ndef f():\n    import matplotlib\n"
    )
    assert imported_on_import(source) == [(1, "ray"), (3, "qdrant_client")]


@pytest.mark.parametrize("requirement", PYPROJECT["project"]["dependencies"])
def test_declared_dependencies_are_installed(requirement):
    importlib.metadata.distribution(_distribution(requirement))
