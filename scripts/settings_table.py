"""Print the README's settings table, built from the `Settings` fields' descriptions.

    python scripts/settings_table.py

`tests/test_docs.py` checks that the README's table equals this output, so a setting is
described in one place: its `Field(description=...)` in `verbatim/settings.py`.
"""

from __future__ import annotations

from pydantic.fields import FieldInfo

from verbatim.settings import Settings

HEADER = "| setting (environment) | default | meaning |\n|---|---|---|"


def shown_default(field: FieldInfo) -> str:
    """The default as a reader should see it: a computed one by its `shown_default` text."""
    extra = field.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("shown_default"), str):
        return str(extra["shown_default"])
    value = field.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return str(value)
    return f"`{value}`"


def settings_rows() -> list[str]:
    """One table row per `Settings` field, in their order."""
    rows = []
    for name, field in Settings.model_fields.items():
        if not field.description:
            raise ValueError(f"Settings.{name} has no description: add Field(description=...)")
        meaning = field.description.replace("|", "\\|")
        rows.append(f"| `VERBATIM_{name.upper()}` | {shown_default(field)} | {meaning} |")
    return rows


def settings_table() -> str:
    return "\n".join([HEADER, *settings_rows()])


if __name__ == "__main__":
    print(settings_table())  # noqa: T201
