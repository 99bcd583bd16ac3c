"""Small real clips for tests, written with PyAV.

Content is built as planes of known code values (colour bars, gradients,
noise, a moving square), so tests can assert exact numbers after decoding.
"""

from __future__ import annotations

import struct
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import av.filter
import numpy as np

from vidsr.io.colour import (
    MATRIX_NAMES,
    PRIMARIES_NAMES,
    RANGE_FULL,
    RANGE_LIMITED,
    TRANSFER_NAMES,
    ColourSpec,
    code_of,
)
from vidsr.io.pixfmt import planar_name, planes_to_frame, source_format, with_alpha

# 100% colour bars, left to right: white, yellow, cyan, green, magenta, red, blue, black.
BAR_RGB = np.array([[1, 1, 1], [1, 1, 0], [0, 1, 1], [0, 1, 0],
                    [1, 0, 1], [1, 0, 0], [0, 0, 1], [0, 0, 0]], dtype=np.float64)
# The same bars as 8-bit limited-range (Y, Cb, Cr), from the published tables.
BARS_709 = np.array([[235, 128, 128], [219, 16, 138], [188, 154, 16], [173, 42, 26],
                     [78, 214, 230], [63, 102, 240], [32, 240, 118], [16, 128, 128]])
BARS_601 = np.array([[235, 128, 128], [210, 16, 146], [170, 166, 16], [145, 54, 34],
                     [106, 202, 222], [81, 90, 240], [41, 240, 110], [16, 128, 128]])

SUBTITLE_CUES = ((0, 100, "Hello"), (120, 300, "World"))  # (start ms, end ms, text)


def bar_values(matrix: str, depth: int) -> np.ndarray:
    """(8, 3) Y/Cb/Cr code values of the bars for ``matrix`` at ``depth`` bits."""
    table = BARS_709 if matrix == "bt709" else BARS_601
    return table * (1 << (depth - 8))


def content_planes(content: str, layout_pix_fmt: str, width: int, height: int, index: int,
                   *, matrix: str = "bt709", seed: int = 0) -> list[np.ndarray]:
    """Planes (h, w each) of one frame of ``content`` in a planar format."""
    layout = source_format(layout_pix_fmt).layout
    depth, peak = layout.bit_depth, layout.max_code
    shapes = [layout.plane_shape(p, width, height) for p in range(layout.plane_count)]
    if content == "bars":
        values = bar_values(matrix, depth)
        if layout.family == "rgb":
            values = (BAR_RGB[:, [1, 2, 0]] * peak).round()  # G, B, R
        planes = []
        for p, (h, w) in enumerate(shapes):
            bar = np.minimum(np.arange(w) * 8 // w, 7)
            planes.append(np.broadcast_to(values[bar, p], (h, w)).copy())
    elif content == "gradient":
        planes = []
        for h, w in shapes:
            ramp = np.linspace(0, peak, w).round()
            planes.append(np.broadcast_to(ramp, (h, w)) + np.arange(h)[:, None] * 0)
    elif content == "noise":
        rng = np.random.default_rng(seed + index)
        planes = [rng.integers(0, peak + 1, size=s) for s in shapes]
    elif content == "moving":
        planes = []
        for p, (h, w) in enumerate(shapes):
            plane = np.full((h, w), (peak + 1) // 2 if p else (peak + 1) // 4)
            x = (index * 3) % max(1, w - w // 4)
            plane[h // 4: h // 2, x: x + w // 4] = peak - (peak + 1) // 8
            planes.append(plane)
    else:
        raise ValueError(f"unknown content {content!r}")
    return [np.ascontiguousarray(p, dtype=layout.dtype) for p in planes]


def make_clip(
    path: str | Path,
    *,
    width: int,
    height: int,
    pix_fmt: str = "yuv420p",
    frames: int = 8,
    rate: int | Fraction = 25,
    codec: str = "libx264",
    lossless: bool = False,
    colour: ColourSpec | None = None,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    sar: Fraction | None = None,
    audio: bool | str = False,
    subtitles: bool = False,
    chapters: list[tuple[float, float, str]] | None = None,
    metadata: dict[str, str] | None = None,
    content: str = "bars",
    container_format: str | None = None,
    rotation: int = 0,
    mirror: bool = False,
    gop: int | None = None,
    codec_options: dict[str, str] | None = None,
) -> Path:
    """Write a clip and return its path.

    ``pts`` (in ``time_base``, default 1/1000 when given) makes it VFR;
    ``rotation`` (degrees counter-clockwise) and ``mirror`` write a display matrix, as
    phones do; ``audio`` True/"aac"/"flac" adds a 440 Hz sine; ``subtitles`` adds two
    cues (srt in Matroska, mov_text in MP4); ``chapters`` are (start s, end s,
    title); ``gop``: a keyframe every that many frames (x264: two B-frames between);
    ``codec_options`` go to the encoder as they are.
    Formats the encoder cannot take directly are written from a planar source through
    swscale (use codec="rawvideo" for any pixel format).
    """
    path = Path(path)
    if pts is not None:
        frames = len(pts)
        time_base = time_base or Fraction(1, 1000)
    time_base = time_base or Fraction(1) / Fraction(rate)
    planar = source_format(pix_fmt).layout
    matrix = colour.matrix if colour else "bt709"
    with av.open(str(path), mode="w", format=container_format) as out:
        video = out.add_stream(codec, rate=Fraction(rate))
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        ctx = video.codec_context
        ctx.time_base = time_base
        video.time_base = time_base
        if sar is not None:
            ctx.sample_aspect_ratio = sar
        if rotation or mirror:
            video.set_display_rotation(rotation, hflip=mirror)
        if colour is not None:
            ctx.colorspace = code_of(MATRIX_NAMES, colour.matrix)
            ctx.color_primaries = code_of(PRIMARIES_NAMES, colour.primaries)
            ctx.color_trc = code_of(TRANSFER_NAMES, colour.transfer)
            ctx.color_range = RANGE_FULL if colour.full_range else RANGE_LIMITED
        options = {}
        if lossless and codec == "libx264":
            options["qp"] = "0"
        if gop is not None:
            ctx.gop_size = gop
            if codec == "libx264":
                options.update(keyint_min=str(gop), sc_threshold="0", bf="2")
        ctx.options = {**options, **(codec_options or {})}
        audio_stream = _add_audio(out, path, audio)
        sub_stream = _add_subtitles(out, path) if subtitles else None
        if chapters:
            out.set_chapters([
                {"id": i + 1, "start": round(s * 1000), "end": round(e * 1000),
                 "time_base": Fraction(1, 1000), "metadata": {"title": title}}
                for i, (s, e, title) in enumerate(chapters)])
        for key, value in (metadata or {}).items():
            out.metadata[key] = value
        out.start_encoding()
        if sub_stream is not None:
            _write_subtitles(out, sub_stream, path)
        for i in range(frames):
            if pix_fmt == "pal8":
                frame = _palette_bars(width, height)
            else:
                planes = content_planes(content, planar.pix_fmt, width, height, i,
                                        matrix=matrix)
                if pix_fmt.startswith("yuvj"):
                    # Same planes, full-range name: copy the codes, no swscale range change.
                    frame = planes_to_frame(planes, replace(planar, pix_fmt=pix_fmt))
                else:
                    frame = planes_to_frame(planes, planar)
                if pix_fmt != frame.format.name:
                    frame = frame.reformat(format=pix_fmt)
            frame.pts = pts[i] if pts is not None else i * round(1 / (Fraction(rate) * time_base))
            frame.time_base = time_base
            if colour is not None:
                frame.colorspace, frame.color_range = ctx.colorspace, ctx.color_range
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if audio_stream is not None:
            seconds = float(frames / Fraction(rate))
            _write_audio(out, audio_stream, seconds)
    return path


def _palette_bars(width: int, height: int) -> av.VideoFrame:
    """Colour bars as a pal8 frame (swscale cannot write palettes)."""
    index = np.broadcast_to(np.minimum(np.arange(width) * 8 // width, 7), (height, width))
    palette = np.zeros((256, 4), dtype=np.uint8)
    palette[:8, 0] = 255  # opaque
    palette[:8, 1:] = BAR_RGB * 255
    return av.VideoFrame.from_ndarray((index.astype(np.uint8), palette), format="pal8")


def _add_audio(out: av.container.OutputContainer, path: Path,
               audio: bool | str) -> av.audio.stream.AudioStream | None:
    if not audio:
        return None
    codec = audio if isinstance(audio, str) else ("flac" if path.suffix == ".mkv" else "aac")
    stream = out.add_stream(codec, rate=48000, layout="stereo")
    stream.metadata["language"] = "eng"
    stream.metadata["title"] = "Tone"
    return stream


def _write_audio(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream,
                 seconds: float) -> None:
    rate = 48000
    t = np.arange(round(rate * seconds)) / rate
    tone = (0.25 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    fmt = stream.codec_context.format.name
    samples = np.stack([tone, tone])
    if fmt == "s16":
        frame = av.AudioFrame.from_ndarray(
            (samples.T.reshape(1, -1) * 32767).astype(np.int16), format="s16", layout="stereo")
    elif fmt == "s32":
        frame = av.AudioFrame.from_ndarray(
            (samples.T.reshape(1, -1) * 2**31 * 0.99).astype(np.int32), format="s32",
            layout="stereo")
    else:
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
    frame.sample_rate = rate
    frame.pts = 0
    frame.time_base = Fraction(1, rate)
    out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def _add_subtitles(out: av.container.OutputContainer, path: Path) -> av.stream.Stream:
    codec = "mov_text" if path.suffix in (".mp4", ".mov") else "subrip"
    # A mux-only stream: the cues below are already in the codec's packet format.
    stream = out.add_mux_stream(codec, time_base=Fraction(1, 1000))
    stream.metadata["language"] = "fra"
    return stream


def _write_subtitles(out: av.container.OutputContainer, stream: av.stream.Stream,
                     path: Path) -> None:
    for start, end, text in SUBTITLE_CUES:
        data = text.encode()
        if path.suffix in (".mp4", ".mov"):
            data = len(data).to_bytes(2, "big") + data  # mov_text: 16-bit length prefix
        packet = av.Packet(data)
        packet.stream = stream
        packet.time_base = Fraction(1, 1000)
        packet.pts = packet.dts = start
        packet.duration = end - start
        out.mux(packet)


def planar_of(pix_fmt: str) -> str:
    """The planar pix_fmt the decoder yields for ``pix_fmt`` (test shorthand)."""
    layout = source_format(pix_fmt).layout
    return planar_name(layout.family, layout.bit_depth, layout.log2_chroma_w,
                       layout.log2_chroma_h)


def make_audio_only(path: str | Path) -> Path:
    """A short silent FLAC file: a real media file with no video stream."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("flac", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16",
                                           layout="mono")
        frame.sample_rate = 8000
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def damage_clip(path: Path, *, cut: bool = False) -> Path:
    """Cut the file in half, or scramble the start of video packet #6's payload."""
    data = bytearray(path.read_bytes())
    if cut:
        path.write_bytes(data[: len(data) // 2])
        return path
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    # Skip Matroska's 4-byte block header so the container stays readable and only
    # the H.264 data (NAL length, slice header) is damaged.
    pos, _ = packets[6]
    start, length = pos + 4, 64
    data[start: start + length] = np.random.default_rng(1).integers(
        0, 256, length, dtype=np.uint8).tobytes()
    path.write_bytes(data)
    return path


# -- interlaced clips ----------------------------------------------------------------------

INTERLACED_WIDTH, INTERLACED_HEIGHT, INTERLACED_FRAMES = 64, 48, 12
FIELD_ORDER_CODES = {"progressive": 1, "tt": 2, "bb": 3, "tb": 4, "bt": 5}  # AVFieldOrder


def field_picture(t: int) -> np.ndarray:
    """The luma seen at field time ``t``: vertical bars moving 3 px per field."""
    _, x = np.mgrid[0:INTERLACED_HEIGHT, 0:INTERLACED_WIDTH]
    return (((x + 3 * t) // 8) % 2 * 200 + 28).astype(np.uint8)


def woven(index: int, order: str) -> np.ndarray:
    """Frame ``index`` of an interlaced clip: its first field sampled at field time 2i,
    its second at 2i + 1, woven into the rows (``order`` tff: the first field on the
    even rows)."""
    first, second = field_picture(2 * index), field_picture(2 * index + 1)
    top, bottom = (first, second) if order == "tff" else (second, first)
    frame = np.empty_like(first)
    frame[0::2], frame[1::2] = top[0::2], bottom[1::2]
    return frame


def make_interlaced(path: str | Path, order: str, flag: str | None, *,
                    frames: int = INTERLACED_FRAMES, first_frame: int = 0,
                    audio_start: int | None = None, pts: list[int] | None = None) -> Path:
    """A lossless (FFV1) 25 fps clip of woven frames; ``flag`` (tt, bb, tb, bt, progressive) is
    written on the stream. ``first_frame``: the video starts that many frames late;
    ``audio_start``: adds a mono FLAC track (440 Hz) starting at that sample (48 kHz);
    ``pts``: each frame's time in 1/25 s instead (gaps make a variable frame rate)."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=25)
        stream.width, stream.height = INTERLACED_WIDTH, INTERLACED_HEIGHT
        stream.pix_fmt = "yuv420p"
        if flag is not None:
            stream.codec_context.field_order = FIELD_ORDER_CODES[flag]
        sound = None
        if audio_start is not None:
            sound = out.add_stream("flac", rate=48000, layout="mono")
        out.start_encoding()
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(woven(index, order), format="gray")
            frame = frame.reformat(format="yuv420p")
            frame.pts = first_frame + index if pts is None else pts[index]
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
        if sound is not None and audio_start is not None:
            count = 48000 * frames // 25
            tone = 0.25 * np.sin(2 * np.pi * 440 * np.arange(count) / 48000)
            chunk = av.AudioFrame.from_ndarray((tone * 32767).astype(np.int16)[None],
                                               format="s16", layout="mono")
            chunk.sample_rate, chunk.pts = 48000, audio_start
            chunk.time_base = Fraction(1, 48000)
            out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
    return path


def cover_jpeg(width: int = 32, height: int = 32) -> bytes:
    """A small JPEG picture, as cover art holds it."""
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuvj420p"
    codec.time_base = Fraction(1, 25)
    frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), (200, 40, 90), np.uint8),
                                       format="rgb24").reformat(format="yuvj420p")
    return b"".join(bytes(p) for p in (*codec.encode(frame), *codec.encode(None)))


def make_streams_clip(path: str | Path, *, videos: list[tuple[int, int, bool]],
                      cover: bool = False, audio: bool = False, frames: int = 6) -> Path:
    """A file with several video streams: ``videos`` are (width, height, marked default),
    each ``frames`` frames of flat grey at its own level (16 x its place + 40), then a JPEG
    cover (an attached picture; an attachment in Matroska) and an AAC tone if asked."""
    path = Path(path)
    # FFmpeg's .m4a muxer (ipod) takes no cover art; iTunes' files are MP4 inside.
    with av.open(str(path), "w", format="mp4" if path.suffix == ".m4a" else None) as out:
        streams = []
        for width, height, default in videos:
            stream = out.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.options = {"preset": "ultrafast", "qp": "0"}
            stream.disposition = (av.stream.Disposition.default if default
                                  else av.stream.Disposition(0))
            streams.append(stream)
        picture = None
        if cover and path.suffix == ".mkv":
            # Matroska keeps cover art as an attachment; FFmpeg reads it back as a picture.
            out.add_attachment("cover.jpg", "image/jpeg", cover_jpeg())
        elif cover:
            picture = out.add_stream("mjpeg", rate=1)
            picture.width, picture.height, picture.pix_fmt = 32, 32, "yuvj420p"
            picture.disposition = av.stream.Disposition.attached_pic
        tone = out.add_stream("aac", rate=48000, layout="stereo") if audio else None
        out.start_encoding()
        if picture is not None:
            packet = av.Packet(cover_jpeg())
            packet.stream = picture
            out.mux(packet)
        for place, (stream, (width, height, _)) in enumerate(zip(streams, videos,
                                                                  strict=True)):
            for index in range(frames):
                frame = av.VideoFrame.from_ndarray(
                    np.full((height, width), 40 + 16 * place, np.uint8), format="gray")
                frame = frame.reformat(format="yuv420p")
                frame.pts = index
                frame.time_base = Fraction(1, 25)
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        if tone is not None:
            _write_audio(out, tone, frames / 25)
    return path


def make_pgs(path: str | Path, cues: list[tuple[float, float]], *, width: int = 160,
             height: int = 120) -> Path:
    """A Blu-ray (PGS) subtitle file: for each (start s, end s) cue a white 40x8 box shown,
    then cleared."""
    def segment(kind: int, seconds: float, payload: bytes) -> bytes:
        return b"PG" + struct.pack(">IIBH", round(seconds * 90000), 0, kind, len(payload)) + payload

    def composition(number: int, shown: bool) -> bytes:
        objects = struct.pack(">HBBHH", 0, 0, 0, 20, 20) if shown else b""
        return struct.pack(">HHBHBBBB", width, height, 0x10, number, 0x80 if shown else 0, 0,
                           0, int(shown)) + objects

    window = struct.pack(">BBHHHH", 1, 0, 20, 20, 40, 8)
    palette = struct.pack(">BB", 0, 0) + bytes([1, 235, 128, 128, 255])
    rows = b"".join(bytes([0, 0x80 | 40, 1, 0, 0]) for _ in range(8))  # 40 of colour 1
    picture = (struct.pack(">HBB", 0, 0, 0xC0) + (len(rows) + 4).to_bytes(3, "big")
               + struct.pack(">HH", 40, 8) + rows)
    data = b""
    for number, (start, end) in enumerate(cues):
        data += (segment(0x16, start, composition(2 * number, True))
                 + segment(0x17, start, window) + segment(0x14, start, palette)
                 + segment(0x15, start, picture) + segment(0x80, start, b"")
                 + segment(0x16, end, composition(2 * number + 1, False))
                 + segment(0x17, end, window) + segment(0x80, end, b""))
    Path(path).write_bytes(data)
    return Path(path)


# EIA-608 byte pairs, one a frame: load a caption, "HI" (odd parity), show it (twice, as
# broadcasters send control codes), then padding.
_CAPTION_PAIRS = [(0x94, 0x20), (0x94, 0x20), (0xC8, 0x49), (0x94, 0x2F), (0x94, 0x2F)]


def _a53_sei(pair: tuple[int, int]) -> bytes:
    """An H.264 SEI NAL (user data registered by ITU-T T.35: ATSC "GA94" cc_data) holding
    one EIA-608 byte pair."""
    cc_data = bytes([0x03, 0x40 | 1, 0xFF, 0xFC, *pair, 0xFF])
    payload = bytes([0xB5, 0x00, 0x31]) + b"GA94" + cc_data
    return b"\x00\x00\x00\x01" + bytes([0x06, 0x04, len(payload)]) + payload + b"\x80"


def make_captioned_h264(path: str | Path, *, frames: int = 12, width: int = 64,
                        height: int = 48) -> Path:
    """A raw H.264 stream (25 fps, no B-frames) whose every picture carries closed captions
    (ATSC A53) as SEI: "HI" from the third frame."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = Fraction(1, 25)
    codec.options = {"preset": "ultrafast", "bf": "0"}
    out = b""
    packets = []
    for index in range(frames):
        planes = content_planes("bars", "yuv420p", width, height, index, matrix="bt709")
        frame = planes_to_frame(planes, source_format("yuv420p").layout)
        frame.pts = index
        packets += codec.encode(frame)
    packets += codec.encode(None)
    for index, packet in enumerate(packets):
        pair = _CAPTION_PAIRS[index] if index < len(_CAPTION_PAIRS) else (0x80, 0x80)
        data = bytes(packet)
        # Before the picture's slice (NAL type 1 or 5), after its parameter sets.
        starts = [i for i in range(len(data) - 4) if data[i:i + 3] == b"\x00\x00\x01"
                  and data[i + 3] & 0x1F in (1, 5)]
        cut = starts[0] - (1 if starts[0] and data[starts[0] - 1] == 0 else 0)
        out += data[:cut] + _a53_sei(pair) + data[cut:]
    Path(path).write_bytes(out)
    return Path(path)


def make_alpha_clip(path: str | Path, *, codec: str, pix_fmt: str = "yuva420p",
                    frames: int = 3, width: int = 64, height: int = 48) -> Path:
    """Colour bars whose alpha is 255 on the left half and 64 on the right (``pix_fmt`` an
    alpha format ``codec`` takes; libvpx-vp9 in WebM keeps it in its alpha channel)."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if codec == "libvpx-vp9":
            stream.codec_context.options = {"lossless": "1"}  # the alpha values exact
        for index in range(frames):
            planes = content_planes("bars", "yuv444p", width, height, index, matrix="bt709")
            alpha = np.full((height, width), 64, np.uint8)
            alpha[:, :width // 2] = 255
            opaque = planes_to_frame(planes, source_format("yuv444p").layout)
            frame = with_alpha(opaque, alpha, "yuva444p").reformat(format=pix_fmt)
            frame.pts = index
            frame.time_base = Fraction(1, 25)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


# -- telecined film ------------------------------------------------------------------------

FILM_WIDTH, FILM_HEIGHT = 96, 64
FILM_RATE, VIDEO_RATE = Fraction(24000, 1001), Fraction(30000, 1001)


def film_picture(index: int) -> np.ndarray:
    """Film frame ``index`` (luma): a smooth random texture panned 3 px right and 2 px down a
    frame, with a bright bar crossing it 5 px a frame; no two frames of a clip alike."""
    rng = np.random.default_rng(7)
    texture = rng.integers(0, 256, (2 * FILM_HEIGHT + 8, 4 * FILM_WIDTH + 8)).astype(np.float64)
    kernel = np.ones(5) / 5
    for axis in (0, 1):
        texture = np.apply_along_axis(np.convolve, axis, texture, kernel, "same")
    texture = (texture - texture.min()) / np.ptp(texture) * 180 + 30
    x, y = (3 * index) % (3 * FILM_WIDTH), (2 * index) % FILM_HEIGHT
    picture = texture[y: y + FILM_HEIGHT, x: x + FILM_WIDTH].copy()
    bar = (5 * index) % (FILM_WIDTH - 12)
    picture[FILM_HEIGHT // 3: FILM_HEIGHT // 3 + 16, bar: bar + 12] = 235
    return picture.round().astype(np.uint8)


def telecine(pictures: list[np.ndarray] | list[av.VideoFrame], pattern: str = "23",
             first_field: str = "t") -> list[av.VideoFrame]:
    """Film at 24000/1001 through FFmpeg's ``telecine``: the 29.97 fps video frames, flagged
    interlaced with ``first_field`` (``t``: top field first, ``b``: bottom) first. The film is
    luma pictures or yuv420p frames."""
    frames = (film_frames(pictures) if isinstance(pictures[0], np.ndarray)  # type: ignore[arg-type]
              else pictures)
    width, height = frames[0].width, frames[0].height
    graph = av.filter.Graph()
    node = graph.add("buffer", f"video_size={width}x{height}:pix_fmt=yuv420p:time_base="
                               f"{1 / FILM_RATE}:frame_rate={FILM_RATE}:pixel_aspect=1/1")
    for name, args in (("telecine", f"first_field={first_field}:pattern={pattern}"),
                       ("setfield", f"{first_field}ff")):
        following = graph.add(name, args)
        node.link_to(following)
        node = following
    node.link_to(graph.add("buffersink"))
    graph.configure()
    video: list[av.VideoFrame] = []

    def pull() -> None:
        while True:
            try:
                video.append(graph.pull())
            except (av.BlockingIOError, av.EOFError):
                return

    for index, frame in enumerate(frames):
        frame.pts = index
        graph.push(frame)
        pull()
    graph.push(None)
    pull()
    return video


def make_video_clip(path: str | Path, frames: list[av.VideoFrame], *, codec: str,
                    rate: Fraction = VIDEO_RATE, audio: bool = False, crf: int = 12) -> Path:
    """``frames`` encoded at ``rate`` from time 0: ``mpeg2video`` coded interlaced and flagged
    with the frames' field order as on a DVD, anything else as the encoder takes it (x264:
    progressive, at ``crf``); ``audio`` adds an AAC 440 Hz tone as long as the video."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
        if codec == "mpeg2video":
            flags = av.codec.context.Flags
            stream.codec_context.flags |= flags.interlaced_dct | flags.interlaced_me
            stream.codec_context.bit_rate = 4_000_000
        elif codec == "libx264":
            stream.codec_context.options = {"crf": str(crf)}
        elif codec == "ffv1":
            stream.codec_context.time_base = 1 / rate
        sound = out.add_stream("aac", rate=48000, layout="mono") if audio else None
        for index, frame in enumerate(frames):
            frame.pts, frame.time_base = index, 1 / rate
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
        if sound is not None:
            count = round(48000 * len(frames) / rate)
            tone = 0.25 * np.sin(2 * np.pi * 440 * np.arange(count) / 48000)
            for start in range(0, count, 1024):
                chunk = av.AudioFrame.from_ndarray(
                    tone[start: start + 1024].astype(np.float32)[None], format="fltp",
                    layout="mono")
                chunk.sample_rate, chunk.pts = 48000, start
                chunk.time_base = Fraction(1, 48000)
                out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
    return path


def film_frames(pictures: list[np.ndarray]) -> list[av.VideoFrame]:
    """Film pictures (luma) as progressive yuv420p frames."""
    return [av.VideoFrame.from_ndarray(p, format="gray").reformat(format="yuv420p")
            for p in pictures]


def shot_frames(kind: str, frames: int, width: int = 64,
                height: int = 48) -> list[list[np.ndarray]]:
    """A shot of slowly changing pictures: a moving square, or colour bars sliding."""
    if kind == "square":
        return [content_planes("moving", "yuv420p", width, height, i) for i in range(frames)]
    bars = content_planes("bars", "yuv420p", width, height, 0)
    return [[np.roll(p, 2 * i // (1 + (k > 0)), axis=1) for k, p in enumerate(bars)]
            for i in range(frames)]


def write_ffv1(path: Path, frames: list[list[np.ndarray]], gop: int | None = None) -> Path:
    """A lossless (ffv1) clip of ``frames`` at 25 fps; a keyframe every ``gop`` frames
    when given."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=25)
        if gop is not None:
            stream.codec_context.gop_size = gop
        stream.width, stream.height = frames[0][0].shape[1], frames[0][0].shape[0]
        stream.pix_fmt = "yuv420p"
        for planes in frames:
            for packet in stream.encode(planes_to_frame(planes, source_format("yuv420p").layout)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def decoded_frames(path: Path) -> list[list[np.ndarray]]:
    """Every frame of ``path``'s video as its planes."""
    with av.open(str(path)) as c:
        return [[np.asarray(p) for p in _planes(f)] for f in c.decode(video=0)]


def _planes(frame: av.VideoFrame) -> list[np.ndarray]:
    out = []
    for plane in frame.planes:
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        out.append(rows[:, :plane.width].copy())
    return out
