"""A VapourSynth script (``.vpy``) as the transcoder's input.

The script runs in this process, as vspipe would run it; its output node 0 is
the video and an audio node set with ``set_output(index=1)`` is the audio.
:class:`ScriptSource` yields the video as the same :class:`FrameBatch` stream
the PyAV decoder yields, so the engine and the sinks do not know where the
frames came from:

- timestamps are the running sum of the frames' ``_DurationNum/_DurationDen``
  (a VFR script stays VFR), counted in ``1/fps`` for a constant-rate clip;
- colour tags, aspect ratio and field order come from the first frame's
  properties (``_Matrix``, ``_Primaries``, ``_Transfer``, ``_Range``,
  ``_SARNum/_SARDen``, ``_FieldBased``);
- the sinks copy a source's other streams from a media file, so the audio
  node is written losslessly into a temporary Matroska *companion* beside a
  one-frame video track standing for the script's video (the output plan reads
  the input's timeline from its video stream); the sinks copy the audio from
  there as they copy a file's.

The mapping between VapourSynth formats and vidsr's planes lives here once;
the ``vsvidsr`` filter uses it too.

vapoursynth is imported only when a script is opened: the core never needs it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import av.container
import numpy as np

from vidsr.errors import DecodeError, InputError, OptionsError
from vidsr.io.colour import RANGE_FULL, RANGE_LIMITED, ColourSpec, resolve_colour
from vidsr.io.frames import FrameBatch, PlaneLayout
from vidsr.io.input_file import check_input_path
from vidsr.io.pixfmt import planar_name
from vidsr.io.video_info import StreamSummary, VideoInfo
from vidsr.io.windows import SCENE_CHANGE_PROPS

if TYPE_CHECKING:
    import vapoursynth as vs

log = logging.getLogger("vidsr")

SCRIPT_SUFFIXES = (".vpy",)
# VFR clips have no rate to count in: this tick holds 24, 25, 30, 50, 60, 120 fps and
# their NTSC variants (1001/30000 s = 3003 ticks) exactly.
_VFR_TIME_BASE = Fraction(1, 90000)
_VS_FIELDS = {0: "progressive", 1: "bb", 2: "tt"}  # _FieldBased
_FAMILIES = {"RGB": "rgb", "YUV": "yuv", "GRAY": "gray"}
# gbrp order (vidsr's RGB planes) from VapourSynth's R, G, B planes.
_RGB_ORDER = (1, 2, 0)


def is_script(path: str | Path) -> bool:
    """Whether ``path`` names a VapourSynth script (by its extension, as vspipe does)."""
    return Path(path).suffix.lower() in SCRIPT_SUFFIXES


def refuse_deinterlace(path: str | Path, mode: str) -> None:
    """A script's frames are what the script makes them: ``--deinterlace on`` and ``ivtc``
    are refused, ``auto`` and ``off`` leave them alone."""
    if mode == "on":
        raise OptionsError(f"{path}: --deinterlace on does not apply to a VapourSynth script;"
                           " deinterlace in the script (e.g. core.bwdif.Bwdif) instead")
    if mode == "ivtc":
        raise OptionsError(f"{path}: --deinterlace ivtc does not apply to a VapourSynth script;"
                           " match fields and decimate in the script (e.g. core.vivtc.VFM and"
                           " core.vivtc.VDecimate) instead")


# -- formats and properties, shared with the vsvidsr filter ---------------------------------


def layout_of(fmt: vs.VideoFormat) -> PlaneLayout | None:
    """vidsr's planes for an integer VapourSynth format; None where vidsr has none
    (float samples, 9/14-bit, odd subsamplings)."""
    import vapoursynth as vs

    if fmt.sample_type != vs.INTEGER or fmt.bits_per_sample not in (8, 10, 12, 16):
        return None
    family = _FAMILIES.get(fmt.color_family.name)
    if family is None:
        return None
    sub = (fmt.subsampling_w, fmt.subsampling_h) if family == "yuv" else (0, 0)
    if sub not in ((1, 1), (1, 0), (0, 0)):
        return None
    depth = fmt.bits_per_sample
    return PlaneLayout(family, depth, *sub, pix_fmt=planar_name(family, depth, *sub))


def colour_of(props: Mapping[str, Any], layout: PlaneLayout, height: int) -> ColourSpec:
    """The colour a frame's properties state, resolved as a file's tags are (untagged
    matrices guessed from the size; VapourSynth's H.273 codes are FFmpeg's)."""
    if "_Range" in props:  # R71 on: 1 full, 0 limited
        ffmpeg_range = RANGE_FULL if int(props["_Range"]) == 1 else RANGE_LIMITED
    elif "_ColorRange" in props:  # before: 0 full, 1 limited
        ffmpeg_range = RANGE_FULL if int(props["_ColorRange"]) == 0 else RANGE_LIMITED
    else:
        ffmpeg_range = 0  # unspecified: limited for YUV, as for an untagged file
    return resolve_colour(matrix=int(props.get("_Matrix", 2)), color_range=ffmpeg_range,
                          primaries=int(props.get("_Primaries", 2)),
                          transfer=int(props.get("_Transfer", 2)), family=layout.family,
                          height=height, rate=None)


def frame_planes(frame: vs.VideoFrame, layout: PlaneLayout) -> list[np.ndarray]:
    """A frame's planes as vidsr holds them (copies; RGB in gbrp order)."""
    order = _RGB_ORDER if layout.family == "rgb" else range(layout.plane_count)
    return [np.array(frame[p], copy=True) for p in order]


def write_planes(frame: vs.VideoFrame, planes: list[np.ndarray], layout: PlaneLayout) -> None:
    """Write vidsr planes (RGB in gbrp order) into a writable frame."""
    order = _RGB_ORDER if layout.family == "rgb" else range(layout.plane_count)
    for source, p in zip(planes, order, strict=True):
        np.asarray(frame[p])[...] = source


def frame_duration(props: Mapping[str, Any], fps: Fraction) -> Fraction:
    """A frame's duration in seconds: its own ``_DurationNum/_DurationDen``, else 1/fps."""
    num, den = props.get("_DurationNum"), props.get("_DurationDen")
    if num is not None and den:
        return Fraction(int(num), int(den))
    if fps:
        return 1 / fps
    raise InputError("a frame of a variable-rate clip has no _DurationNum/_DurationDen")


def clip_rate(clip: vs.VideoNode) -> Fraction:
    """The clip's frame rate; 0 for a variable-rate clip."""
    return Fraction(clip.fps.numerator, clip.fps.denominator) if clip.fps else Fraction(0)


def _last_line(exc: BaseException) -> str:
    """The cause of a VapourSynth error: the last line (a callback's has a traceback)."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


# -- running a script -------------------------------------------------------------------------


@dataclass(frozen=True)
class ScriptOutputs:
    """What a script set as its outputs."""

    video: vs.VideoNode
    audio: vs.AudioNode | None


def run_script(path: Path) -> ScriptOutputs:
    """Run the script at ``path`` as vspipe does; its output 0 (video) and 1 (audio, if any)."""
    check_input_path(path)
    try:
        import vapoursynth as vs
    except ImportError:
        raise InputError(f"{path}: reading VapourSynth scripts needs VapourSynth"
                         " (pip install 'vidsr[vapoursynth]')") from None
    code = path.read_text(encoding="utf-8")
    vs.clear_outputs()
    scope = {"__name__": "__vapoursynth__", "__file__": str(path)}
    try:
        exec(compile(code, str(path), "exec"), scope)  # noqa: S102 - the user's own script
        outputs = dict(vs.get_outputs())
    except Exception as exc:  # a script can raise anything; the user needs its message
        message = str(exc).strip().splitlines()
        raise InputError(f"{path}: the script failed: {type(exc).__name__}:"
                         f" {message[-1] if message else ''}") from exc
    finally:
        vs.clear_outputs()
    video = outputs.get(0)
    if video is None or not isinstance(video, vs.VideoOutputTuple):
        raise InputError(f"{path}: the script sets no video output 0 (end it with"
                         " clip.set_output())")
    audio = outputs.get(1)
    if audio is not None and not isinstance(audio, vs.AudioNode):
        log.warning("%s: output 1 is not audio; only an audio node there is copied", path)
        audio = None
    return ScriptOutputs(video.clip, audio)


def describe_script(path: Path, outputs: ScriptOutputs) -> VideoInfo:
    """The VideoInfo of a script's video output (renders its first frame for the
    colour properties)."""
    clip = outputs.video
    fmt = clip.format
    if fmt is None or not clip.width or not clip.height:
        raise InputError(f"{path}: the script's clip changes format or size from frame to"
                         " frame; vidsr needs one format and size (add a core.resize call)")
    layout = layout_of(fmt)
    if layout is None:
        raise InputError(f"{path}: the script outputs {fmt.name}; vidsr reads 8, 10, 12 or"
                         f" 16-bit integer RGB, YUV or GRAY: end the script with"
                         f" {_conversion_hint(fmt)}")
    import vapoursynth as vs

    try:
        props = dict(clip.get_frame(0).props)
    except vs.Error as exc:
        raise InputError(f"{path}: frame 0: the script failed: {_last_line(exc)}") from None
    fps = clip_rate(clip)
    first = frame_duration(props, fps)
    # The frames' own durations rule: a clip that claims a rate its frames do not keep
    # (bestsource gives a variable-rate file its time base as the rate) counts in ticks.
    constant = bool(fps) and first == 1 / fps
    sar_num, sar_den = props.get("_SARNum", 0), props.get("_SARDen", 0)
    audio = outputs.audio
    others = (StreamSummary(1, "audio", _audio_codec(audio)),) if audio is not None else ()
    return VideoInfo(
        path=path,
        width=clip.width,
        height=clip.height,
        pix_fmt=layout.pix_fmt,
        layout=layout,
        colour=colour_of(props, layout, clip.height),
        sar=Fraction(int(sar_num), int(sar_den)) if sar_num and sar_den else Fraction(1),
        time_base=1 / fps if constant else _VFR_TIME_BASE,
        average_rate=1 / first,
        frame_count=clip.num_frames,
        duration=float(clip.num_frames / fps) if constant else None,
        codec="vapoursynth",
        stream_index=0,
        container_format="vapoursynth script",
        other_streams=others,
        field_order=_VS_FIELDS.get(int(props.get("_FieldBased", 0)), "unknown"),
    )


def _conversion_hint(fmt: vs.VideoFormat) -> str:
    family = fmt.color_family.name
    if family == "RGB":
        return "clip = core.resize.Point(clip, format=vs.RGB48)"
    if family == "GRAY":
        return "clip = core.resize.Point(clip, format=vs.GRAY16)"
    return "clip = core.resize.Point(clip, format=vs.YUV444P16)"


def probe_script(path: str | Path) -> VideoInfo:
    """Describe a script's video output as :func:`vidsr.io.probe.probe` describes a file's."""
    path = Path(path)
    return describe_script(path, run_script(path))


# -- the audio companion -----------------------------------------------------------------------

# (VapourSynth sample type, bits) -> (codec, PyAV sample format, left shift): lossless, and
# FLAC where it can be (MP4 and MOV hold FLAC; 24-bit PCM codecs take s32 with the sample
# in the top bits).
_AUDIO_CODECS = {
    (0, 16): ("flac", "s16", 0),
    (0, 24): ("pcm_s24le", "s32", 8),
    (0, 32): ("pcm_s32le", "s32", 0),
    (1, 32): ("pcm_f32le", "flt", 0),
}


def _audio_codec(audio: vs.AudioNode) -> str:
    return _AUDIO_CODECS.get((int(audio.sample_type), audio.bits_per_sample),
                             ("unsupported",))[0]


def write_companion(path: Path, audio: vs.AudioNode | None) -> None:
    """A Matroska file with a one-frame stand-in video track (index 0) and ``audio``
    (index 1). The stand-in is never copied; a Matroska file without a single packet
    cannot be opened again."""
    if audio is not None and (int(audio.sample_type), audio.bits_per_sample) not in _AUDIO_CODECS:
        raise InputError(f"audio output 1 has {audio.bits_per_sample}-bit samples; vidsr"
                         " copies 16, 24 or 32-bit integer or 32-bit float audio")
    with av.open(str(path), "w", format="matroska") as out:
        video = out.add_stream("ffv1", rate=25)
        video.width, video.height, video.pix_fmt = 16, 16, "gray"
        stream = None
        if audio is not None:
            codec, sample_fmt, _ = _AUDIO_CODECS[(int(audio.sample_type),
                                                  audio.bits_per_sample)]
            stream = out.add_stream(codec, rate=audio.sample_rate)
            # VapourSynth's channel mask is FFmpeg's (the same speakers in the same order).
            stream.layout = av.AudioLayout(f"0x{audio.channel_layout:x}")
            stream.format = sample_fmt
        out.start_encoding()  # every stream is added before this
        out.mux(video.encode(av.VideoFrame(16, 16, "gray")))
        out.mux(video.encode(None))
        if audio is not None and stream is not None:
            _write_audio(out, stream, audio)


def _write_audio(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream,
                 audio: vs.AudioNode) -> None:
    _, sample_fmt, shift = _AUDIO_CODECS[(int(audio.sample_type), audio.bits_per_sample)]
    written = 0
    for frame in audio.frames():
        # numpy sees VapourSynth's integer samples as unsigned; they are signed.
        samples = np.stack([np.asarray(frame[c]) for c in range(audio.num_channels)])
        if samples.dtype.kind == "u":
            samples = samples.view(samples.dtype.str.replace("u", "i"))
        if shift:
            samples = samples << shift
        count = samples.shape[1]
        if not sample_fmt.endswith("p"):  # packed: channels interleaved in one row
            samples = np.ascontiguousarray(samples.T).reshape(1, -1)
        chunk = av.AudioFrame.from_ndarray(samples, format=sample_fmt,
                                           layout=stream.layout.name)
        chunk.sample_rate = audio.sample_rate
        chunk.pts = written
        written += count
        out.mux(stream.encode(chunk))
    out.mux(stream.encode(None))


# -- the source ----------------------------------------------------------------------------------


class ScriptSource:
    """A script's video as batches of planes, in the shape of
    :class:`~vidsr.io.decode.Decoder`: ``info``, ``container`` (the companion, for the
    output plan), ``streams_source`` (the file the sinks copy other streams from),
    ``skipped`` (always 0), iteration, ``close()``."""

    def __init__(self, path: str | Path, *, batch_size: int, prefetch: int = 0) -> None:
        if batch_size < 1:
            raise OptionsError(f"batch size must be at least 1, got {batch_size}")
        self.path = Path(path)
        self.batch_size = batch_size
        self.skipped = 0
        outputs = run_script(self.path)
        self._clip = outputs.video
        self.info: VideoInfo = describe_script(self.path, outputs)
        self._prefetch = prefetch
        self._folder = Path(tempfile.mkdtemp(prefix="vidsr-script-"))
        try:
            self.streams_source = self._folder / "streams.mkv"
            write_companion(self.streams_source, outputs.audio)
            self._container = av.open(str(self.streams_source))
        except BaseException:
            shutil.rmtree(self._folder, ignore_errors=True)
            raise

    @property
    def container(self) -> av.container.InputContainer:
        return self._container

    def __enter__(self) -> ScriptSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the companion file; safe to call twice."""
        self._container.close()
        shutil.rmtree(self._folder, ignore_errors=True)

    def __iter__(self) -> Iterator[FrameBatch]:
        return node_batches(self._timed_frames(), self.info, self.batch_size, scene_marks=True)

    def _timed_frames(self) -> Iterator[tuple[vs.VideoFrame, int]]:
        """Each frame with its timestamp: the running sum of the frames' durations."""
        time_base = self.info.time_base
        fps = clip_rate(self._clip)
        start = Fraction(0)  # seconds, exact: rounding each pts alone never drifts
        for index, frame in enumerate(render_frames(self._clip, self.path,
                                                    prefetch=self._prefetch)):
            yield frame, round(start / time_base)
            try:
                start += frame_duration(frame.props, fps)
            except InputError as exc:
                raise InputError(f"{self.path}: frame {index}: {exc}") from None


# -- from a VapourSynth node to batches: scripts' and QTGMC's (vidsr.io.qtgmc) ---------------


def render_frames(clip: vs.VideoNode, path: Path, *, prefetch: int = 0,
                  failing: str = "the script") -> Iterator[vs.VideoFrame]:
    """``clip`` 's frames in order, rendered ahead by VapourSynth's threads; a filter's
    error is a DecodeError naming ``path``, the frame and what ``failing`` (the script)."""
    import vapoursynth as vs

    frames = clip.frames(prefetch=prefetch or None, close=True)
    index = 0
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except vs.Error as exc:
            raise DecodeError(f"{path}: frame {index}: {failing} failed:"
                              f" {_last_line(exc)}") from None
        yield frame
        index += 1


def node_batches(frames: Iterable[tuple[vs.VideoFrame, int]], info: VideoInfo,
                 batch_size: int, *, scene_marks: bool = False) -> Iterator[FrameBatch]:
    """(frame, timestamp in ``info.time_base``) pairs as batches of ``batch_size`` frames
    in ``info.layout``, as :class:`~vidsr.io.decode.Decoder` yields them. ``scene_marks``:
    carry the cuts the frames' props mark (:func:`vidsr.io.windows.marked_cut`), as a
    user's script sets them."""
    layout = info.layout
    planes: list[list[np.ndarray]] = []
    pts: list[int] = []
    marks: list[dict[str, int]] = []
    first_index = 0
    for frame, stamp in frames:
        planes.append(frame_planes(frame, layout))
        pts.append(stamp)
        if scene_marks:
            props = frame.props
            marks.append({name: int(props[name]) for name in SCENE_CHANGE_PROPS
                          if name in props})
        if len(pts) == batch_size:
            yield _batch(planes, pts, info.time_base, first_index, layout, marks)
            first_index += len(pts)
            planes, pts, marks = [], [], []
    if pts:
        yield _batch(planes, pts, info.time_base, first_index, layout, marks)


def _batch(planes: list[list[np.ndarray]], pts: list[int], time_base: Fraction,
           first_index: int, layout: PlaneLayout, marks: list[dict[str, int]]) -> FrameBatch:
    stacked = [np.stack([frame[p] for frame in planes]) for p in range(layout.plane_count)]
    return FrameBatch(stacked, list(pts), time_base, first_index, layout,
                      scene_marks=list(marks) if any(marks) else None)
