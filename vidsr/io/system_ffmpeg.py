"""What the system ffmpeg behind ``--ffmpeg`` can do, asked of that ffmpeg itself.

``--ffmpeg`` exists for encoders the bundled FFmpeg lacks (libxvid, libtheora,
libaom...), so its encoders, their pixel formats and whether they open in the
chosen container are asked of the executable that will run, never of PyAV's
FFmpeg. A short trial encode of two generated frames catches what its muxer or
encoder refuses before any work starts.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from fractions import Fraction
from functools import cache
from pathlib import Path

from vidsr.errors import OptionsError
from vidsr.io.child import killed_with_parent

_ENCODER_LINE = re.compile(r"^\s*V\S*\s+(\S+)\s+(.*?)(?:\s+\(codec (\S+)\))?\s*$")


def _run(ffmpeg: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ffmpeg, "-hide_banner", *args], capture_output=True, text=True,
                          timeout=timeout, check=False, preexec_fn=killed_with_parent())


@cache
def video_encoders(ffmpeg: str) -> dict[str, str]:
    """Video encoder name -> the codec it writes (``libxvid`` -> ``mpeg4``)."""
    found = {}
    for line in _run(ffmpeg, "-encoders").stdout.splitlines():
        match = _ENCODER_LINE.match(line)
        if match and match.group(1) != "=":
            name, codec = match.group(1), match.group(3)
            found[name] = codec or name
    return found


@cache
def encoder_pixel_formats(ffmpeg: str, encoder: str) -> tuple[str, ...]:
    """The pixel formats ``encoder`` takes in this ffmpeg (empty: any)."""
    for line in _run(ffmpeg, "-h", f"encoder={encoder}").stdout.splitlines():
        if "Supported pixel formats:" in line:
            return tuple(line.split(":", 1)[1].split())
    return ()


# An option of an `ffmpeg -h` listing: two spaces, then the name (its values go deeper).
_OPTION_LINE = re.compile(r"^  -(\S+)\s")


def _avoptions(listing: str, section: str | None = None) -> frozenset[str]:
    """The option names of ``listing``'s "... AVOptions:" sections (only ``section``'s)."""
    names: set[str] = set()
    inside = False
    for line in listing.splitlines():
        if not line.startswith(" "):
            inside = line.endswith("AVOptions:") and (section is None or line == section)
        elif inside and (match := _OPTION_LINE.match(line)):
            names.add(match.group(1))
    return frozenset(names)


@cache
def encoder_options(ffmpeg: str, encoder: str) -> frozenset[str]:
    """The options ``encoder`` takes in this ffmpeg: its own and every codec's."""
    generic = _avoptions(_run(ffmpeg, "-h", "full").stdout, "AVCodecContext AVOptions:")
    return generic | _avoptions(_run(ffmpeg, "-h", f"encoder={encoder}").stdout)


def check_encoder(ffmpeg: str, encoder: str) -> str:
    """The codec ``encoder`` writes; OptionsError when this ffmpeg has no such video encoder."""
    encoders = video_encoders(ffmpeg)
    if encoder not in encoders:
        raise OptionsError(f"{ffmpeg} has no video encoder {encoder!r} (see `{ffmpeg}"
                           " -encoders`)")
    return encoders[encoder]


def trial_encode(ffmpeg: str, *, encoder: str, muxer: str, width: int, height: int,
                 pix_fmt: str, rate: Fraction, options: tuple[tuple[str, str], ...]) -> None:
    """Encode two generated frames as the run will; OptionsError with ffmpeg's own words
    when it refuses (an option it does not know, a size, a format its muxer rejects).

    Each option must be one of the encoder's: on ffmpeg's command line any other word
    would be a program option (``vstats_file`` writes a file, ``attach`` copies one into
    the output), and encoder options may come from a shared preset.
    """
    unknown = [key for key, _ in options if key not in encoder_options(ffmpeg, encoder)]
    if unknown:
        raise OptionsError(f"{encoder} has no option {', '.join(map(repr, unknown))} in"
                           f" {ffmpeg} (see `{ffmpeg} -h encoder={encoder}`)")
    with tempfile.TemporaryDirectory(prefix="vidsr-ffmpeg-") as scratch:
        out = Path(scratch) / "trial"
        args = ["-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                f"testsrc2=size={width}x{height}:rate={rate.numerator}/{rate.denominator}",
                "-frames:v", "2", "-c:v", encoder, "-pix_fmt", pix_fmt]
        for key, value in options:
            args += [f"-{key}", value]
        result = _run(ffmpeg, *args, "-f", muxer, "-y", str(out), timeout=60)
        if result.returncode != 0:
            # ffmpeg's first line names the problem; later ones say what it gave up on.
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            raise OptionsError(f"{ffmpeg} cannot write {encoder} in {muxer}:"
                               f" {lines[0] if lines else f'exit {result.returncode}'}")
