"""Run presets: named sets of `vidsr` options in plain TOML (``vidsr/presets/*.toml``).

A preset's ``[options]`` keys are the command's own long options without the dashes
(``square-pixels = true``, ``encoder-opt = ["tune=grain"]``), so a preset says nothing a
command line could not, and the command's own parser checks every value. The preset's
options are placed before the command line's, which therefore overrides them.
"""

from __future__ import annotations

import argparse
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidsr.errors import OptionsError

PRESET_DIR = Path(__file__).resolve().parent / "presets"
_TOP_LEVEL = frozenset({"description", "options"})


@dataclass(frozen=True)
class RunPreset:
    """One preset: where it came from, what it is for, and its options."""

    name: str
    path: Path
    description: str
    options: dict[str, Any]

    def to_text(self) -> str:
        settings = ", ".join(f"{key}={_show(value)}" for key, value in self.options.items())
        return f"{self.name}: {self.description}\n    {settings}"


def bundled_presets() -> list[RunPreset]:
    """The presets vidsr ships, by name."""
    return [load_preset(path) for path in sorted(PRESET_DIR.glob("*.toml"))]


def load_preset(name_or_path: str | Path) -> RunPreset:
    """A bundled preset by name (``archival-sd``) or a TOML file (``./mine.toml``)."""
    text = str(name_or_path)
    path = Path(text)
    if not (path.suffix == ".toml" or "/" in text or path.is_file()):
        path = PRESET_DIR / f"{text}.toml"
        if not path.is_file():
            names = ", ".join(p.stem for p in sorted(PRESET_DIR.glob("*.toml")))
            raise OptionsError(f"unknown preset {text!r} (bundled: {names}; or a .toml file)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OptionsError(f"{path}: preset file does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise OptionsError(f"{path}: not a readable TOML preset ({exc})") from exc
    unknown = sorted(set(data) - _TOP_LEVEL)
    if unknown:
        raise OptionsError(f"{path}: unknown key {unknown[0]!r} (a preset has a description"
                           " and an [options] table)")
    options = data.get("options", {})
    if not isinstance(options, dict):
        raise OptionsError(f"{path}: [options] must be a table of option = value")
    return RunPreset(path.stem, path, str(data.get("description", "")), options)


def preset_arguments(preset: RunPreset, parser: argparse.ArgumentParser) -> list[str]:
    """``preset``'s options as command-line words for ``parser`` (to go before the user's).

    An option the command does not have is an error naming it and the file.
    """
    flags = {option: action for action in parser._actions  # argparse keeps no public map
             for option in action.option_strings}
    words: list[str] = []
    for key, value in preset.options.items():
        flag = f"--{key.replace('_', '-')}"
        action = flags.get(flag)
        if action is None or flag in ("--preset", "--help"):
            raise OptionsError(f"{preset.path}: unknown key {key!r} (not an option of"
                               f" `{parser.prog}`)")
        if action.nargs == 0:  # a switch: true turns it on, false leaves it off
            if not isinstance(value, bool):
                raise OptionsError(f"{preset.path}: {key} must be true or false, got {value!r}")
            words += [flag] if value else []
        else:
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, (dict, list)):
                    raise OptionsError(f"{preset.path}: {key} takes a value or a list of"
                                       f" values, got {item!r}")
                words += [flag, _show(item)]
    return words


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)
