"""Generated documentation: the README's settings table and `.env.example`'s settings section, both
read off `rag.settings.Settings` (names, defaults, Field descriptions), so they cannot drift from it.

`make docs` (python scripts/gen_docs.py) rewrites the parts between the markers; tests/test_docs.py
regenerates them in memory and fails when the committed files differ.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

from pydantic import AliasChoices, SecretStr

from rag.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README_MARKERS = ("<!-- settings-table:start -->", "<!-- settings-table:end -->")
ENV_MARKERS = ("# settings:start", "# settings:end")
REGENERATE = "make docs (or: .venv/bin/python scripts/gen_docs.py)"


@dataclass(frozen=True)
class SettingDoc:
    env: str  # RAGQA_NAME
    default: str  # as it would be written in .env; "" for none, always "" for a secret
    unset: bool  # the default is None (not an empty string)
    description: str
    secret: bool
    also_read_as: tuple[str, ...]  # older names still accepted


def setting_docs() -> list[SettingDoc]:
    """Every setting in declaration order."""
    prefix = Settings.model_config.get("env_prefix", "")
    out = []
    for name, field in Settings.model_fields.items():
        env = f"{prefix}{name}".upper()
        if not field.description:
            raise ValueError(f"setting {name} has no description (Field(description=...) in rag/settings.py)")
        secret = SecretStr in getattr(field.annotation, "__args__", (field.annotation,))
        aliases: tuple[str, ...] = ()
        if isinstance(field.validation_alias, AliasChoices):
            names = {str(c).upper() for c in field.validation_alias.choices if isinstance(c, str)}
            aliases = tuple(sorted(n for n in names if n.startswith(prefix.upper()) and n != env))
        default = "" if secret else _env_value(field.default)
        out.append(SettingDoc(env, default, field.default is None, field.description, secret, aliases))
    return out


def _env_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _full_description(doc: SettingDoc) -> str:
    text = doc.description
    if doc.also_read_as:
        text += f" Also read under its older name {', '.join(doc.also_read_as)}."
    return text


def settings_table() -> str:
    """The README's table, markers excluded."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for doc in setting_docs():
        if doc.secret:
            default = "unset (secret)"
        else:
            default = f"`{doc.default}`" if doc.default else "unset" if doc.unset else "empty"
        meaning = _full_description(doc).replace("|", "\\|").replace("*", "\\*")
        lines.append(f"| `{doc.env}` | {default} | {meaning} |")
    return "\n".join(lines)


def env_section() -> str:
    """`.env.example`'s settings, markers excluded: each one's description, then its default,
    commented out (a secret without a value)."""
    parts = [("# Generated from rag/settings.py by `make docs`; edit the descriptions there.\n"
              "# Every line is commented out: the app uses the default shown unless you uncomment it.")]
    for doc in setting_docs():
        comment = textwrap.fill(_full_description(doc), width=98, initial_indent="# ", subsequent_indent="# ",
                                break_on_hyphens=False, break_long_words=False)
        parts.append(f"{comment}\n# {doc.env}={doc.default}")
    return "\n\n".join(parts)


def replace_between(text: str, markers: tuple[str, str], body: str, where: str) -> str:
    start, end = markers
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f"{where}: expected one '{start}' line and, after it, one '{end}' line")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def generated_files(root: Path = ROOT) -> dict[Path, str]:
    """What README.md and .env.example should hold: their committed text with the generated parts
    brought up to date."""
    readme, env = root / "README.md", root / ".env.example"
    return {
        readme: replace_between(readme.read_text(encoding="utf-8"), README_MARKERS, settings_table(), "README.md"),
        env: replace_between(env.read_text(encoding="utf-8"), ENV_MARKERS, env_section(), ".env.example"),
    }


def write(root: Path = ROOT) -> list[Path]:
    """Rewrite the generated parts; returns the files that changed."""
    changed = []
    for path, text in generated_files(root).items():
        if path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed


def stale(root: Path = ROOT) -> list[Path]:
    """The files whose generated parts are out of date."""
    return [path for path, text in generated_files(root).items() if path.read_text(encoding="utf-8") != text]
