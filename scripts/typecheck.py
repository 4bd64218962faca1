"""Type-check the package as it installs: `python scripts/typecheck.py [mypy args]`.

The source tree keeps the design card's top-level folders (`ingest/`, `index/`, ...), which
install as `verbatim.ingest`, `verbatim.index`, ... (`[tool.setuptools.package-dir]`). mypy
reads no import hooks, so this lays the package out as it installs, as symbolic links to the
source files in a temporary folder, and runs mypy there. Errors name `verbatim/<package>/`.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def link_tree(tree: Path) -> None:
    """The package as it installs, under `tree`, as links to the source files."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    for package, folder in sorted(mapping.items()):
        target = tree.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for source in (ROOT / folder).glob("*.py"):
            (target / source.name).symlink_to(source)
        if (ROOT / folder / "py.typed").exists():
            (target / "py.typed").symlink_to(ROOT / folder / "py.typed")


def main() -> int:
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")]
    with tempfile.TemporaryDirectory(prefix="verbatim-typecheck-") as tree:
        link_tree(Path(tree))
        return subprocess.call([*command, "-p", "verbatim", *sys.argv[1:]], cwd=tree)  # noqa: S603


if __name__ == "__main__":
    sys.exit(main())
