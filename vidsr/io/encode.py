"""Encode frame batches and mux them, with the source's other streams copied alongside.

The encoder choices (pixel format, codec options) are made in :mod:`vidsr.io.encode_options`;
which of them a run uses is decided once, in its :class:`~vidsr.io.output_plan.OutputPlan`,
which the encoder here only reads.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import av
import av.container
import numpy as np

from vidsr.errors import EncodeError, OutputError
from vidsr.io.colour import tag_colour
from vidsr.io.frames import FrameBatch
from vidsr.io.packet_file import PacketWriter
from vidsr.io.passthrough import PassThrough
from vidsr.io.pixfmt import (
    alpha_format,
    planes_to_frame,
    resized_alpha,
    with_alpha,
)

if TYPE_CHECKING:
    from vidsr.io.output_plan import OutputPlan

log = logging.getLogger("vidsr")


class Encoder:
    """Write upscaled frames to ``path`` as ``plan`` says, copying the source's other streams.

    Use as a context manager: leaving the block normally flushes and finishes
    the file; leaving it with an exception closes without finishing (the
    caller deletes the partial file). ``path`` may differ from ``plan.path``
    (a temporary name beside it); the container is ``plan.container`` either way.
    ``source``: the file whose other streams, metadata and chapters are copied (None:
    the video alone).
    """

    def __init__(self, path: str | Path, plan: OutputPlan, source: Path | None) -> None:
        self.path = Path(path)
        self.plan = plan
        self.layout = plan.layout
        self.frames_written = 0
        self._last_dts: int | None = None
        self._stamps = FrameStamps(plan)
        try:
            self._output = self._open_output()
        except (av.FFmpegError, ValueError) as exc:
            raise OutputError(f"{self.path}: cannot create the output file: {exc}") from exc
        self._passthrough: PassThrough | None = None
        self._closed = False
        try:
            self._stream = self._add_video()
            if source is not None:
                self._passthrough = PassThrough(source, self._output, plan.copied_indices,
                                                shift_s=plan.start_s)
            self._output.start_encoding()
        except BaseException as exc:
            self.abort()
            if isinstance(exc, av.FFmpegError):
                raise EncodeError(f"{self.path}: cannot start {plan.encode.codec}: "
                                  f"{exc.strerror}") from exc
            raise

    def _open_output(self) -> av.container.OutputContainer:
        return av.open(str(self.path), mode="w", format=self.plan.container)

    def _add_video(self) -> av.video.stream.VideoStream:
        plan = self.plan
        stream = self._output.add_stream(plan.encode.codec, rate=plan.rate)
        stream.width, stream.height = plan.width, plan.height
        stream.pix_fmt = plan.codec_pix_fmt
        ctx = stream.codec_context
        ctx.time_base = plan.time_base
        stream.time_base = plan.time_base
        ctx.framerate = plan.rate
        ctx.sample_aspect_ratio = plan.sar
        tag_colour(ctx, plan.colour)
        ctx.thread_count = plan.encode.threads
        ctx.options = dict(plan.codec_options)
        ctx.field_order = FIELD_ORDER_CODES.get(plan.field_order, 0)
        if plan.display_matrix is not None:
            stream.set_display_matrix(list(plan.display_matrix))
        if plan.timecode:
            # The muxer writes it its way: a tmcd track in MOV/MP4, a tag in Matroska.
            stream.metadata["timecode"] = plan.timecode
        log.debug("%s: encoding %dx%d %s with %s %s", self.path, plan.width, plan.height,
                  plan.codec_pix_fmt, plan.encode.codec, ctx.options)
        return stream

    def __enter__(self) -> Encoder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, batch: FrameBatch) -> None:
        """Encode one batch (output layout and size; pts in the plan's time base)."""
        if batch.layout.pix_fmt != self.layout.pix_fmt:
            raise EncodeError(f"{self.path}: got {batch.layout.pix_fmt} planes, "
                              f"expected {self.layout.pix_fmt}")
        plan = self.plan
        carriers = batch.side_data if plan.captions and batch.side_data else None
        for k in range(len(batch)):
            frame = output_frame(batch, k, plan, carriers[k] if carriers else None)
            self._stamps.stamp(frame, batch.pts[k])
            if plan.codec_pix_fmt != frame.format.name:
                frame = frame.reformat(format=plan.codec_pix_fmt)
            self._mux_video(self._encode(frame))
            self.frames_written += 1

    def mux_encoded(self, packets: Iterable[av.Packet]) -> None:
        """Mux video packets that an encoder of this same plan made (a segment's, see
        :class:`SegmentEncoder`) as this one's own; nothing is encoded again."""
        for packet in packets:
            # Each segment's encoder starts its decode times a reorder delay before its
            # first frame; where that meets the previous segment's last, keep them rising.
            if (packet.dts is not None and self._last_dts is not None
                    and packet.dts <= self._last_dts
                    and (packet.pts is None or self._last_dts < packet.pts)):
                packet.dts = self._last_dts + 1
            if packet.dts is not None:
                self._last_dts = packet.dts
            packet.stream = self._stream
            self._mux_video([packet])
            self.frames_written += 1

    def _encode(self, frame: av.VideoFrame | None) -> list[av.Packet]:
        try:
            return self._stream.encode(frame)
        except av.FFmpegError as exc:
            raise EncodeError(f"{self.path}: {self.plan.encode.codec} failed at frame "
                              f"{self.frames_written}: {exc.strerror}") from exc

    def _mux_video(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            if self._passthrough is not None and packet.dts is not None:
                self._passthrough.mux_until(self._output, float(packet.dts * packet.time_base))
            try:
                self._output.mux(packet)
            except av.FFmpegError as exc:
                raise EncodeError(f"{self.path}: cannot write video packet: "
                                  f"{exc.strerror}") from exc

    def close(self) -> None:
        """Flush the encoder, copy the remaining pass-through packets, finish the file."""
        if self._closed:
            return
        try:
            self._mux_video(self._encode(None))
            if self._passthrough is not None:
                self._passthrough.finish(self._output)
            self._output.close()
        except av.FFmpegError as exc:
            self.abort()
            raise EncodeError(f"{self.path}: cannot finish the file: {exc.strerror}") from exc
        except BaseException:
            self.abort()
            raise
        self._closed = True
        if self._passthrough is not None:
            self._passthrough.close()

    def abort(self) -> None:
        """Release everything without finishing the file (the caller deletes it)."""
        if self._closed:
            return
        self._closed = True
        if self._passthrough is not None:
            self._passthrough.close()
        try:
            self._output.close()
        except av.FFmpegError as exc:
            # Already failing: the first error is the one the caller sees.
            log.debug("%s: closing the abandoned output: %s", self.path, exc)


class SegmentEncoder(Encoder):
    """Encode one segment of an output exactly as :class:`Encoder` would encode it into
    the whole file, keeping the packets in a packet file at ``path``
    (:mod:`vidsr.io.packet_file`) for :meth:`Encoder.mux_encoded` to mux later.

    The encoder is opened on a scratch output of the plan's own container, so it is set up
    as for the real file (whether parameter sets go in the header or in the stream).
    """

    def __init__(self, path: str | Path, plan: OutputPlan) -> None:
        self._packets = PacketWriter(Path(path), plan.time_base)
        try:
            super().__init__(path, plan, None)
        except BaseException:
            self._packets.close()
            raise

    def _open_output(self) -> av.container.OutputContainer:
        return av.open(io.BytesIO(), mode="w", format=self.plan.container)

    def _mux_video(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self._packets.write(packet)

    def close(self) -> None:
        """Flush the encoder and finish the packet file."""
        if self._closed:
            return
        try:
            self._mux_video(self._encode(None))
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._packets.close()
        try:
            self._output.close()  # the scratch container: what it writes is thrown away
        except av.FFmpegError as exc:
            log.debug("%s: closing the scratch output: %s", self.path, exc)

    def abort(self) -> None:
        super().abort()
        self._packets.close()


# FFmpeg's AVFieldOrder by name.
FIELD_ORDER_CODES = {"progressive": 1, "tt": 2, "bb": 3, "tb": 4, "bt": 5}


def oriented(planes: list[np.ndarray], turn: int, mirror: bool) -> list[np.ndarray]:
    """One frame's planes mirrored left to right (if ``mirror``), then turned ``turn``
    degrees clockwise, as a player shows a picture with that display matrix."""
    if mirror:
        planes = [p[:, ::-1] for p in planes]
    if turn:
        planes = [np.rot90(p, k=-turn // 90) for p in planes]
    return [np.ascontiguousarray(p) for p in planes] if (turn or mirror) else planes


def output_frame(batch: FrameBatch, index: int, plan: OutputPlan,
                 carrier: av.VideoFrame | None = None) -> av.VideoFrame:
    """Frame ``index`` of an upscaled batch as the sinks write it: turned as the plan says,
    with the source's alpha plane resized onto it where the plan keeps alpha (then in the
    layout's :func:`~vidsr.io.pixfmt.alpha_format`), and ``carrier``'s side data."""
    planes = [p[index] for p in batch.planes]
    alpha = None
    if plan.alpha_depth:
        assert batch.alpha is not None, "the decoder was not asked for alpha"
        height, width = planes[0].shape
        alpha = resized_alpha(batch.alpha[index], width, height, plan.alpha_depth,
                              plan.layout.bit_depth)
        planes.append(alpha)
    planes = oriented(planes, plan.turn, plan.mirror)
    frame = planes_to_frame(planes[:plan.layout.plane_count], plan.layout, carrier)
    if alpha is None:
        return frame
    pix_fmt = alpha_format(plan.layout)
    assert pix_fmt is not None
    return with_alpha(frame, planes[-1], pix_fmt)


def stamp_frame(frame: av.VideoFrame, pts: int, plan: OutputPlan) -> None:
    """Give an output frame its timestamp, duration and colour tags from the plan.

    ``pts`` counts in the source's time base; the frame gets the plan's (the same, or one
    tick a frame for encoders that insist on it).
    """
    shifted = pts - plan.start_pts
    if plan.time_base != plan.source_time_base:
        shifted = round(shifted * plan.source_time_base / plan.time_base)
    frame.pts = shifted
    frame.time_base = plan.time_base
    frame.duration = plan.frame_duration
    tag_colour(frame, plan.colour)


class FrameStamps:
    """Stamps a sink's frames in order (:func:`stamp_frame`), keeping their pts rising.

    Where the output counts in frames (AVI, y4m, raw .h264, MPEG-2: one tick a frame), two
    frames of a variable-rate source can round to the same tick, which every encoder
    refuses; the later one takes the next free tick instead, so no frame is lost, and the
    run says so once.
    """

    def __init__(self, plan: OutputPlan) -> None:
        self.plan = plan
        self._last: int | None = None
        self._moved = False

    def stamp(self, frame: av.VideoFrame, pts: int) -> None:
        stamp_frame(frame, pts, self.plan)
        if self._last is not None and frame.pts <= self._last:
            if not self._moved:
                log.warning("%s: the source's frames come closer together than one frame of"
                            " %.3f fps, the fixed rate of %s output; later ones move to the"
                            " next frame slot (write .mkv or .mp4 to keep their exact times)",
                            self.plan.path, float(self.plan.rate), self.plan.container)
                self._moved = True
            frame.pts = self._last + 1
        if (self.plan.container == "avi" and self._last is not None
                and frame.pts - self._last > _AVI_MAX_GAP):
            # FFmpeg's AVI muxer fills a gap with empty chunks, at most this many at once,
            # and refuses the frame after it with a bare "Invalid argument".
            raise EncodeError(f"{self.plan.path}: AVI cannot hold the source's gap of"
                              f" {frame.pts - self._last - 1} frames (at most {_AVI_MAX_GAP})"
                              f" after {float(self._last * self.plan.time_base):.3f} s;"
                              " write .mkv or .mp4 instead")
        self._last = frame.pts


# The most frames an AVI may skip between two (libavformat's avienc).
_AVI_MAX_GAP = 60000
