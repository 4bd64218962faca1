"""The README agrees with the code: its settings table, the CLI's help, the make targets."""

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import click
import pytest

from verbatim.cli import cli
from verbatim.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
MAKEFILE = (ROOT / "Makefile").read_text(encoding="utf-8")
SETTING = re.compile(r"`VERBATIM_([A-Z0-9_]+)`")


def settings_rows(text: str) -> list[str]:
    """The first cell of each body row of the table headed `| setting (environment) |`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| setting (environment) |"))
    rows = []
    for line in lines[start + 2 :]:  # past the header and its |---| line
        if not line.startswith("|"):
            break
        rows.append(line.split("|")[1].strip())
    return rows


def readme_settings(text: str) -> list[str]:
    """Field names of the settings table's rows; a row naming anything else fails."""
    names = []
    for cell in settings_rows(text):
        match = SETTING.fullmatch(cell)
        assert match, f"settings table row {cell!r} is not one `VERBATIM_<NAME>`"
        names.append(match.group(1).lower())
    return names


def test_readme_lists_every_setting():
    names = readme_settings(README)
    assert len(names) == len(set(names)), "a setting is listed twice"
    missing = sorted(set(Settings.model_fields) - set(names))
    unknown = sorted(set(names) - set(Settings.model_fields))
    assert (missing, unknown) == ([], []), (
        f"missing from the table: {missing}; no setting: {unknown}"
    )


def load_script(name: str) -> ModuleType:
    """A module of `scripts/` (a folder of tools, not a package), loaded from its file."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def readme_table(text: str) -> str:
    """The settings table of `text`, from its header line to its last row."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| setting (environment) |"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "\n".join(lines[start:end])


def test_readme_settings_table_is_the_settings_descriptions():
    expected = load_script("settings_table").settings_table()
    assert readme_table(README) == expected, (
        "the README's settings table differs from the Settings fields: paste the output of "
        "`python scripts/settings_table.py` over it"
    )


def test_settings_table_check_sees_a_changed_description():
    expected = load_script("settings_table").settings_table()
    changed = README.replace("| Texts per embedding batch", "| Texts in each embedding batch")
    assert readme_table(changed) != expected
    assert readme_table(f"intro\n\n{expected}\n\nafter\n") == expected


def test_every_setting_has_a_description():
    for name, field in Settings.model_fields.items():
        assert field.description, f"Settings.{name} has no Field(description=...)"


def table(names: list[str]) -> str:
    rows = "".join(f"| `VERBATIM_{name.upper()}` | x | y |\n" for name in names)
    return f"text\n\n| setting (environment) | default | meaning |\n|---|---|---|\n{rows}\nmore\n"


def test_settings_table_parsing_sees_each_row():
    fields = list(Settings.model_fields)
    assert readme_settings(table(fields)) == fields
    assert readme_settings(table(fields[1:])) == fields[1:]  # a removed row is missed
    assert readme_settings(table([*fields, "no_such_thing"]))[-1] == "no_such_thing"
    with pytest.raises(AssertionError, match="is not one"):
        readme_settings(
            table(fields).replace("`VERBATIM_PORT`", "`VERBATIM_HOST`, `VERBATIM_PORT`")
        )


def commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    """Every command and subcommand under `group`, by its full name."""
    found = []
    for name, command in group.commands.items():
        found.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            found += commands(command, f"{prefix}{name} ")
    return found


@pytest.mark.parametrize(("name", "command"), commands(cli), ids=lambda x: str(x))
def test_commands_have_help(name, command):
    assert command.help and command.help.strip(), f"`verbatim {name}` has no help text"
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"`verbatim {name}` option {param.opts} has no help text"


def test_cli_has_commands():
    assert {"ingest", "ask", "serve", "eval"} <= {name for name, _ in commands(cli)}


def readme_make_targets(text: str) -> set[str]:
    """Targets of `make ...` inside fenced code blocks and inline code in `text`."""
    code = re.findall(r"```.*?```", text, flags=re.DOTALL)
    code += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.DOTALL))
    return {target for block in code for target in re.findall(r"\bmake ([a-z][\w-]*)", block)}


def makefile_targets(text: str) -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9_.-]+):", text, flags=re.MULTILINE))


def test_readme_make_targets_exist():
    used = readme_make_targets(README)
    assert {"run", "test", "eval"} <= used  # the parsing finds what the README shows
    assert used <= makefile_targets(MAKEFILE), sorted(used - makefile_targets(MAKEFILE))


def test_make_target_check_catches_an_unknown_target():
    text = README + "\n```sh\nmake frobnicate   # no such target\n```\n"
    assert "frobnicate" in readme_make_targets(text) - makefile_targets(MAKEFILE)


LINK = re.compile(r"\]\(([^)\s]+)\)")
DOCS = ["README.md", "CHANGELOG.md", "eval/README.md"]
DOCS += sorted(str(path.relative_to(ROOT)) for path in (ROOT / "docs").glob("*.md"))


def broken_links(text: str, folder: Path) -> list[str]:
    """Relative links in Markdown `text` (read from `folder`) whose file does not exist."""
    links = [link.partition("#")[0] for link in LINK.findall(text)]
    relative = [
        link for link in links if link and "://" not in link and not link.startswith("mailto:")
    ]
    return [link for link in relative if not (folder / link).exists()]


@pytest.mark.parametrize("name", DOCS)
def test_relative_links_exist(name):
    path = ROOT / name
    assert broken_links(path.read_text(encoding="utf-8"), path.parent) == []


def test_link_check_sees_a_missing_file():
    text = "[a](README.md) [b](docs/nowhere.md#x) [c](https://example.org/x) [d](#top)"
    assert broken_links(text, ROOT) == ["docs/nowhere.md"]
