"""Run presets: named sets of `vidsr` options in plain TOML (``vidsr/presets/*.toml``).

A preset's ``[options]`` keys are the command's own long options without the dashes
(``square-pixels = true``, ``encoder-opt = ["tune=grain"]``), so a preset says nothing a
command line could not, and every value is read as the command line reads it
(:func:`vidsr.options.preset_values`). The preset's values are the command line's
defaults, which the options given on it therefore override.

A preset is data that users share: it sets model, engine and encoding options, never a
program to run or a safeguard to drop (:data:`COMMAND_LINE_ONLY`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidsr.errors import OptionsError

PRESET_DIR = Path(__file__).resolve().parent / "presets"
_TOP_LEVEL = frozenset({"description", "options"})
# Options a preset may not set, whoever reads it (vidsr, vidsr batch, vsvidsr), and why: a
# shared file must not choose a program to run or take away a safeguard.
COMMAND_LINE_ONLY = {
    "ffmpeg": "it names a program to run",
    "overwrite": "it replaces existing files",
    "allow-unsafe-weights": "it lets a weights file run code",
    "preset": "presets do not nest",
}
# Encoder options that name a file the encoder writes or reads (two-pass statistics, logs,
# reconstructions, analysis dumps, side files), alone or inside an encoder's own parameter
# string: set by a shared preset, one could overwrite any file the user may write. The
# encoders vidsr offers (x264, x265, SVT-AV1) and their documented file options.
FILE_NAMING_ENCODER_OPTIONS = frozenset({
    "stats", "passlogfile", "dump-yuv", "qpfile", "cqmfile", "tcfile-in", "tcfile-out",
    "csv", "analysis-save", "analysis-load", "recon", "zonefile", "scaling-list",
    "lambda-file", "dhdr10-info", "stat-file", "fgs-table", "roi-map-file",
})
_PARAMETER_STRINGS = ("x264-params", "x264opts", "x265-params", "svtav1-params")


@dataclass(frozen=True)
class RunPreset:
    """One preset: where it came from, what it is for, and its options."""

    name: str
    path: Path
    description: str
    options: dict[str, Any]

    def to_text(self) -> str:
        settings = ", ".join(f"{key}={show_value(value)}"
                             for key, value in self.options.items())
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
    for key in options:
        why = COMMAND_LINE_ONLY.get(key.replace("_", "-"))
        if why is not None:
            raise OptionsError(f"{path}: a preset may not set {key!r} ({why}); give"
                               f" --{key.replace('_', '-')} on the command line")
        if key.replace("_", "-") == "encoder-opt":
            for item in options[key] if isinstance(options[key], list) else [options[key]]:
                named = _file_option(str(item))
                if named is not None:
                    raise OptionsError(f"{path}: a preset may not set the encoder option"
                                       f" {named!r} (it names a file); give --encoder-opt"
                                       " on the command line")
    return RunPreset(path.stem, path, str(data.get("description", "")), options)


def _file_option(item: str) -> str | None:
    """The file-naming encoder option ``item`` (KEY=VALUE) sets, bare or in a parameter
    string (``x265-params=csv=log.csv:crf=20``); None when it sets none."""
    key, _, value = item.partition("=")
    key = key.strip()
    if key in FILE_NAMING_ENCODER_OPTIONS:
        return key
    if key in _PARAMETER_STRINGS:
        for part in value.split(":"):
            inner = part.partition("=")[0].strip()
            if inner in FILE_NAMING_ENCODER_OPTIONS:
                return f"{key}: {inner}"
    return None


def show_value(value: Any) -> str:
    """A TOML value as a preset listing shows it and as a command line would give it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(show_value(v) for v in value) + "]"
    return str(value)
