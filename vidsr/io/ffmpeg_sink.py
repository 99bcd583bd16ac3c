"""The ``--ffmpeg`` sink: upscaled frames go to a system ffmpeg for encoding and muxing.

For encoders or filters the bundled FFmpeg lacks. Frames travel to ffmpeg as
raw video inside NUT, which carries each frame's pts and time base, so VFR
survives exactly as with the in-process encoder. The source is ffmpeg's second
input, for the copied streams, chapters and metadata. Everything about the
output (pixel format, colour tags, aspect ratio, time base, codec options,
which streams are copied) comes from the run's :class:`OutputPlan`, as it does
for the PyAV sink.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import av

from vidsr.errors import EncodeError, OptionsError
from vidsr.io.child import killed_with_parent
from vidsr.io.colour import ColourSpec
from vidsr.io.encode import FrameStamps, output_frame
from vidsr.io.frames import FrameBatch
from vidsr.io.output_plan import OutputPlan
from vidsr.io.passthrough import attached_picture, attaches_pictures
from vidsr.io.pixfmt import alpha_format

log = logging.getLogger("vidsr")


def find_ffmpeg(name: str) -> str:
    """The ffmpeg executable for ``name`` (a path or a command on PATH)."""
    found = shutil.which(name)
    if found is None:
        raise OptionsError(f"{name}: ffmpeg not found (install it or give its path to --ffmpeg)")
    return found


def colour_args(colour: ColourSpec) -> list[str]:
    """ffmpeg output options that tag the stream with ``colour``."""
    args = ["-color_range", "pc" if colour.full_range else "tv"]
    for option, value in (("-colorspace", colour.matrix), ("-color_primaries", colour.primaries),
                          ("-color_trc", colour.transfer)):
        if value and value != "unknown":
            args += [option, value]
    return args


def ffmpeg_command(plan: OutputPlan, path: Path, source: Path,
                   pictures: Mapping[int, tuple[Path, str]] | None = None) -> list[str]:
    """The ffmpeg command line that writes ``plan``'s output to ``path`` from NUT on stdin.
    ``pictures``: copied cover art (by stream index) to attach as files instead, each a
    (file, MIME type), for a container that keeps cover art as attachments."""
    pictures = pictures or {}
    assert plan.ffmpeg is not None
    # -copyts: the frames already carry the plan's timestamps; the source's streams get the
    # same shift as the video instead of ffmpeg's own per-input one.
    shift = ["-itsoffset", f"{-plan.start_s:.6f}"] if plan.start_s else []
    command = [plan.ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-copyts",
               "-f", "nut", "-i", "pipe:0", *shift, "-i", f"file:{source.absolute()}",
               "-map", "0:v:0"]
    for index in plan.copied_indices:
        if index not in pictures:
            command += ["-map", f"1:{index}"]
    # -attach adds its streams after the mapped ones, attachments among them.
    attachment = sum(1 for s in plan.streams if s.copied and s.stream.type == "attachment")
    for file, mimetype in pictures.values():
        command += ["-attach", str(file), f"-metadata:s:t:{attachment}", f"mimetype={mimetype}"]
        attachment += 1
    command += [
        "-map_metadata", "1", "-map_chapters", "1",
        # The upscaled stream is the output's first video stream (v:0); copied cover art is
        # a video stream too, which a plain -c:v or -vf would re-encode or filter.
        "-c", "copy", "-c:v:0", plan.encode.codec, "-pix_fmt:v:0", plan.codec_pix_fmt,
        "-fps_mode", "passthrough",  # keep every frame's pts: VFR stays VFR
        # Count in the plan's time base (the source's, or a tick a frame where the codec
        # insists), not ffmpeg's 1/rate.
        "-enc_time_base:v", f"{plan.time_base.numerator}/{plan.time_base.denominator}",
        "-filter:v:0", f"setsar={plan.sar.numerator}/{plan.sar.denominator}",
        *colour_args(plan.colour),
    ]
    if plan.encode.threads:
        command += ["-threads:v", str(plan.encode.threads)]
    if plan.field_order != "unknown":
        command += ["-field_order:v", plan.field_order]
    if plan.timecode:
        command += ["-metadata:s:v:0", f"timecode={plan.timecode}"]
    for key, value in plan.codec_options:
        command += [f"-{key}", value]
    return [*command, "-f", plan.container, "-y", f"file:{path.absolute()}"]


class FFmpegEncoder:
    """Same surface as :class:`vidsr.io.encode.Encoder`, backed by an ffmpeg process."""

    def __init__(self, path: str | Path, plan: OutputPlan, source: Path) -> None:
        self.path = Path(path)
        self.plan = plan
        self.layout = plan.layout
        self._stamps = FrameStamps(plan)
        self._stderr = tempfile.TemporaryFile()
        self._pictures = tempfile.TemporaryDirectory(prefix="vidsr-pictures-")
        command = ffmpeg_command(plan, self.path, source, self._picture_files(source))
        log.debug("ffmpeg command: %s", " ".join(command))
        # Killed with vidsr, even by SIGKILL: an orphaned ffmpeg would keep encoding.
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=self._stderr,
                                         preexec_fn=killed_with_parent())
        self._closed = False
        try:
            self._container = av.open(self._process.stdin, "w", format="nut")
            stream = self._container.add_stream("rawvideo", rate=plan.rate)
            stream.width, stream.height = plan.width, plan.height
            stream.pix_fmt = (alpha_format(plan.layout) if plan.alpha_depth else None) or \
                plan.layout.pix_fmt
            # Frames carry source pts: the raw stream must count in the plan's time base,
            # or the encoder would round them to 1/rate.
            stream.codec_context.time_base = plan.time_base
            stream.time_base = plan.time_base
            self._stream = stream
        except BaseException:
            self.abort()
            raise

    def _picture_files(self, source: Path) -> dict[int, tuple[Path, str]]:
        """The copied cover art written out for ``-attach``, where the container keeps it as
        attachments (a mapped picture stream would become a one-frame video track)."""
        if not attaches_pictures(self.plan.container):
            return {}
        files = {}
        for copy in self.plan.streams:
            if copy.copied and copy.stream.type == "video":  # only cover art is copied
                picture = attached_picture(source, copy.stream.index)
                file = Path(self._pictures.name) / f"{copy.stream.index}" / picture.name
                file.parent.mkdir()
                file.write_bytes(picture.data)
                files[copy.stream.index] = (file, picture.mimetype)
        return files

    def write(self, batch: FrameBatch) -> None:
        """Send a batch of upscaled frames, each with its source pts."""
        try:
            for k in range(len(batch)):
                frame = output_frame(batch, k, self.plan)
                self._stamps.stamp(frame, batch.pts[k])
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
        self._pictures.cleanup()

    def abort(self) -> None:
        """Stop ffmpeg without finishing the file (the caller deletes it)."""
        self._closed = True
        self._process.kill()
        self._process.wait()
        self._stderr.close()
        self._pictures.cleanup()

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
            self.abort()
