"""Type-check the package as it installs: `python scripts/typecheck.py [mypy args]`.

The source tree keeps the design card's top-level folders (`ingest/`, `index/`, ...), which
install as `verbatim.ingest`, `verbatim.index`, ... (`[tool.setuptools.package-dir]`). mypy
reads no import hooks, so this lays the package out as it installs, as symbolic links to the
source files under `build/typecheck/`, and runs mypy there. Errors name `verbatim/<package>/`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "typecheck"


def link_tree() -> None:
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    shutil.rmtree(TREE, ignore_errors=True)
    for package, folder in sorted(mapping.items()):
        target = TREE.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for source in (ROOT / folder).glob("*.py"):
            (target / source.name).symlink_to(source)
        if (ROOT / folder / "py.typed").exists():
            (target / "py.typed").symlink_to(ROOT / folder / "py.typed")


def main() -> int:
    link_tree()
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")]
    return subprocess.call([*command, "-p", "verbatim", *sys.argv[1:]], cwd=TREE)  # noqa: S603


if __name__ == "__main__":
    sys.exit(main())
