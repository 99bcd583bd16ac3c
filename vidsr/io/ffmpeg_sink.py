"""The ``--ffmpeg`` sink: upscaled frames go to a system ffmpeg for encoding and muxing.

For encoders or filters the bundled FFmpeg lacks. Frames travel to ffmpeg as
raw video inside NUT, which carries each frame's pts and time base, so VFR
survives exactly as with the in-process encoder. The source is given to ffmpeg
as a second input for the copied streams, chapters and metadata; which streams
are copied is decided by the same rules as the in-process encoder.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

import av
import ffmpeg as ffmpeg_python

from vidsr.errors import EncodeError, OptionsError
from vidsr.io.colour import ColourSpec
from vidsr.io.encode import EncodeOptions, codec_options
from vidsr.io.frames import FrameBatch, PlaneLayout
from vidsr.io.passthrough import PassThrough
from vidsr.io.pixfmt import planes_to_frame
from vidsr.io.probe import VideoInfo

log = logging.getLogger("vidsr")


def find_ffmpeg(name: str) -> str:
    """The ffmpeg executable for ``name`` (a path or a command on PATH)."""
    found = shutil.which(name)
    if found is None:
        raise OptionsError(f"{name}: ffmpeg not found (install it or give its path to --ffmpeg)")
    return found


def copied_stream_indices(source: VideoInfo, output_path: Path) -> list[int]:
    """Source streams the output container can hold, decided as the in-process encoder does.

    PassThrough maps the streams into a scratch container of the same type;
    streams it cannot hold are named in its warnings.
    """
    with tempfile.TemporaryDirectory(prefix="vidsr-") as scratch:
        with av.open(str(Path(scratch) / f"probe{output_path.suffix}"), "w") as probe_out:
            mapping = PassThrough(source.path, probe_out, source.stream_index)
            try:
                return mapping.copied_indices
            finally:
                mapping.close()


def colour_args(colour: ColourSpec) -> dict[str, str]:
    """ffmpeg output options that tag the stream with ``colour``."""
    args = {"color_range": "pc" if colour.full_range else "tv"}
    for key, value in (("colorspace", colour.matrix), ("color_primaries", colour.primaries),
                       ("color_trc", colour.transfer)):
        if value and value != "unknown":
            args[key] = value
    return args


class FFmpegEncoder:
    """Same surface as :class:`vidsr.io.encode.Encoder`, backed by an ffmpeg process."""

    def __init__(self, path: str | Path, source: VideoInfo, *, width: int, height: int,
                 layout: PlaneLayout, options: EncodeOptions, ffmpeg: str = "ffmpeg") -> None:
        self.path = Path(path)
        self.source = source
        self.layout = layout
        self._stderr = tempfile.TemporaryFile()
        executable = find_ffmpeg(ffmpeg)
        frames_in = ffmpeg_python.input("pipe:0", format="nut")
        source_in = ffmpeg_python.input(str(source.path))
        streams = [frames_in["v:0"]]
        streams += [source_in[str(i)] for i in copied_stream_indices(source, self.path)]
        out_args = {
            "c": "copy",
            "c:v": options.codec,
            "pix_fmt": options.pix_fmt or layout.pix_fmt,
            "fps_mode": "passthrough",  # keep every frame's pts: VFR stays VFR
            "enc_time_base:v": "-1",  # count in the input's time base, not 1/rate
            "map_metadata": "1",
            "map_chapters": "1",
            "vf": f"setsar={source.sar.numerator}/{source.sar.denominator}",
            **colour_args(source.colour),
        }
        for key, value in codec_options(options).items():
            out_args[key] = value
        command = (
            ffmpeg_python.output(*streams, str(self.path), **out_args)
            .global_args("-nostdin", "-hide_banner", "-loglevel", "error")
            .compile(cmd=executable)
        )
        log.debug("ffmpeg command: %s", " ".join(command))
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=self._stderr)
        try:
            self._container = av.open(self._process.stdin, "w", format="nut")
            stream = self._container.add_stream("rawvideo", rate=source.average_rate or 25)
            stream.width, stream.height, stream.pix_fmt = width, height, layout.pix_fmt
            # Frames carry source pts: the raw stream must count in the source's time base,
            # or the encoder would round them to 1/rate.
            stream.codec_context.time_base = source.time_base
            stream.time_base = source.time_base
            self._stream = stream
        except BaseException:
            self._abort()
            raise
        self._closed = False

    def write(self, batch: FrameBatch) -> None:
        """Send a batch of upscaled frames, each with its source pts."""
        try:
            for k in range(len(batch)):
                frame = planes_to_frame([p[k] for p in batch.planes], self.layout)
                frame.pts = batch.pts[k]
                frame.time_base = batch.time_base
                for packet in self._stream.encode(frame):
                    self._container.mux(packet)
        except (BrokenPipeError, av.FFmpegError, OSError) as exc:
            raise EncodeError(f"{self.path}: ffmpeg stopped: {self._error_text() or exc}") from exc

    def close(self) -> None:
        """Flush, close ffmpeg's input and wait for it to finish the file."""
        if self._closed:
            return
        self._closed = True
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            self._process.stdin.close()
        except (BrokenPipeError, av.FFmpegError, OSError) as exc:
            self._process.wait()
            raise EncodeError(f"{self.path}: ffmpeg stopped: {self._error_text() or exc}") from exc
        code = self._process.wait()
        if code != 0:
            raise EncodeError(f"{self.path}: ffmpeg failed (exit {code}): {self._error_text()}")
        self._stderr.close()

    def _abort(self) -> None:
        self._closed = True
        self._process.kill()
        self._process.wait()
        self._stderr.close()

    def _error_text(self) -> str:
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""

    def __enter__(self) -> FFmpegEncoder:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()
