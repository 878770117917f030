"""Themes are data: TOML files in the repository's ``themes/`` folder (packaged as
``qbench_tui/themes_data``), turned into Textual :class:`~textual.theme.Theme` objects.

A file holds the Theme fields (``primary``, ``background``, …, ``dark``) plus an optional
``[variables]`` table of CSS variable overrides. A broken file is reported and skipped: a theme
must never stop the app from starting.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from textual.theme import Theme

DEFAULT_THEME = "qbench-dark"
_THEME_FIELDS = {f.name for f in fields(Theme)}


@dataclass(frozen=True)
class ThemeFile:
    """One loaded theme with where it came from and its human title."""

    theme: Theme
    title: str
    path: Path


def theme_dirs() -> list[Path]:
    """Folders searched for ``*.toml`` themes, first match of a name wins."""
    here = Path(__file__).resolve().parent
    return [here.parent / "themes", here / "themes_data"]


def load_theme_file(path: Path) -> ThemeFile:
    """Parse one theme file; raises ValueError with the file name on any problem."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path.name}: {exc}") from None
    title = str(data.pop("title", "")) or str(data.get("name", path.stem))
    data.setdefault("name", path.stem)
    unknown = set(data) - _THEME_FIELDS
    if unknown:
        raise ValueError(f"{path.name}: unknown key(s) {', '.join(sorted(unknown))}")
    if "primary" not in data:
        raise ValueError(f"{path.name}: a theme needs at least `primary`")
    try:
        return ThemeFile(Theme(**data), title, path)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path.name}: {exc}") from None


def load_themes(dirs: list[Path] | None = None) -> tuple[list[ThemeFile], list[str]]:
    """All theme files found, and one message per file that could not be loaded."""
    found: dict[str, ThemeFile] = {}
    problems: list[str] = []
    for folder in dirs if dirs is not None else theme_dirs():
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                loaded = load_theme_file(path)
            except ValueError as exc:
                problems.append(str(exc))
                continue
            found.setdefault(loaded.theme.name, loaded)
    return list(found.values()), problems
