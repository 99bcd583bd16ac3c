"""Copy a source's non-video streams, metadata and chapters into an output, as packets.

Which streams are copied is decided once, in the run plan
(:func:`plan_stream_copies`), by asking the output's muxer for a header with
each; both sinks copy the same ones. The source is opened a second time so its
audio/subtitle/data packets can be read at the pace of the video being
written: before the encoder muxes video up to time t,
:meth:`PassThrough.mux_until` muxes the copied packets up to t, and
:meth:`PassThrough.finish` writes the rest. Nothing is re-encoded.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import av.container

from vidsr.io.ffmpeg_log import ffmpeg_reasons, reason
from vidsr.io.probe import is_attached_picture, open_input
from vidsr.io.timestamps import Continuity
from vidsr.io.video_info import StreamSummary

log = logging.getLogger("vidsr")

_COPIED_TYPES = ("audio", "subtitle", "data", "attachment")
# Tags each muxer writes for itself; copying the source's would misreport the new file.
_MUXER_TAGS = {"encoder", "major_brand", "minor_version", "compatible_brands", "duration"}


def header_refusal(stream: av.stream.Stream, format_name: str) -> str | None:
    """Why a ``format_name`` container refuses ``stream``, or None if it takes it.

    Asked by writing a header with the stream alone into memory: the muxer's
    list of codecs is not enough (MOV lists FLAC, then refuses it at the header).
    """
    try:
        with ffmpeg_reasons(), av.open(io.BytesIO(), "w", format=format_name) as scratch:
            scratch.add_stream_from_template(stream)
            scratch.start_encoding()
    except av.FFmpegError as exc:  # before ValueError: PyAV's errors are ValueErrors too
        return reason(exc)
    except ValueError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class StreamCopy:
    """One of the source's other streams, and whether the output gets a copy of it."""

    stream: StreamSummary
    copied: bool
    reason: str = ""  # why it is not copied
    carried: bool = False  # not copied, but what it holds reaches the output another way

    def __str__(self) -> str:
        if self.copied:
            return f"{self.stream}: copied"
        return f"{self.stream}: {'carried' if self.carried else 'dropped'} ({self.reason})"


def plan_stream_copies(source: av.container.InputContainer, video_index: int,
                       muxer: str) -> tuple[StreamCopy, ...]:
    """Which streams of ``source`` besides the upscaled one a ``muxer`` output holds."""
    chapters = bool(source.chapters())
    decisions = []
    for stream in source.streams:
        if stream.index == video_index:
            continue
        summary = StreamSummary.of(stream)
        if stream.type == "data" and stream.metadata.get("timecode"):
            # Copied as a track, a timecode track fails at the trailer; the muxer rebuilds it
            # from the video stream's timecode (see OutputPlan.timecode).
            decisions.append(StreamCopy(summary, False, "a timecode track: the timecode is"
                                        " written with the video stream", carried=True))
            continue
        reason = _refusal(stream, summary, source, muxer, has_chapters=chapters)
        decisions.append(StreamCopy(summary, reason is None, reason or ""))
    return tuple(decisions)


def _refusal(stream: av.stream.Stream, summary: StreamSummary,
             source: av.container.InputContainer, muxer: str, *,
             has_chapters: bool) -> str | None:
    if is_attached_picture(stream) and muxer not in _PICTURE_MUXERS:
        return f"{muxer} files keep no cover art"
    if stream.type not in _COPIED_TYPES and not is_attached_picture(stream):
        return (f"only one video stream is upscaled (--video-stream {stream.index} would"
                " upscale this one)")
    if (stream.type == "data" and has_chapters and "mp4" in source.format.name.split(",")):
        # MP4 keeps chapter titles in a text track; the chapters are copied as chapters.
        return "it is the MP4 chapter track; chapters are copied as chapters"
    refusal = header_refusal(stream, muxer)
    if refusal is not None:
        return f"{muxer} cannot hold it: {refusal}"
    return None


# Muxers that keep cover art (MOV's muxer takes the stream and writes nothing).
_PICTURE_MUXERS = frozenset({"mp4", "ipod", "matroska", "mp3"})
# Muxers that store cover art as an attachment, not as a stream.
_ATTACHING_MUXERS = frozenset({"matroska"})
_PICTURE_TYPES = {"mjpeg": ("jpg", "image/jpeg"), "png": ("png", "image/png"),
                  "bmp": ("bmp", "image/bmp"), "gif": ("gif", "image/gif"),
                  "webp": ("webp", "image/webp")}


def attaches_pictures(muxer: str) -> bool:
    """Whether ``muxer`` keeps cover art as a file attachment rather than as a stream
    (Matroska: its muxer would write the picture as a one-frame video track)."""
    return muxer in _ATTACHING_MUXERS


@dataclass(frozen=True)
class AttachedPicture:
    """Cover art as a file attachment: its file name, MIME type and bytes."""

    name: str
    mimetype: str
    data: bytes


def attached_picture(source: Path, index: int) -> AttachedPicture:
    """Attached-picture stream ``index`` of ``source`` (its one packet) as an attachment;
    readers of the attachment show it as cover art again."""
    with open_input(source) as container:
        stream = container.streams[index]
        data = next((bytes(p) for p in container.demux(stream) if p.size), b"")
        codec = StreamSummary.of(stream).codec
        ext, mimetype = _PICTURE_TYPES.get(codec, ("bin", "application/octet-stream"))
        return AttachedPicture(stream.metadata.get("filename") or f"cover.{ext}",
                               stream.metadata.get("mimetype") or mimetype, data)


class PassThrough:
    """The streams ``copied`` of ``source`` mapped into ``output``, with its metadata and
    chapters.

    Create it after the output's video stream and before the header is written.
    The source is opened here, a second time beside the decoder's, so its packets
    can be read at the pace of the video.
    """

    def __init__(self, source: Path, output: av.container.OutputContainer,
                 copied: tuple[int, ...], *, shift_s: float = 0.0) -> None:
        self._shift_s = shift_s  # subtracted from every copied timestamp, as from the video's
        self._source = open_input(source)
        self._path = source
        try:
            self._map: dict[int, av.stream.Stream] = {}
            self._copy_metadata(output)
            chapters = self._source.chapters()
            if chapters:
                output.set_chapters(chapters)
            for index in copied:
                self._add(self._source.streams[index], output)
            self._packets = self._demux()
            self._held: av.Packet | None = None
            # Per copied stream: the last decode time muxed, and whether it was warned about.
            self._last_dts: dict[int, int] = {}
            self._warned: set[int] = set()
        except BaseException:
            self._source.close()
            raise

    def _copy_metadata(self, output: av.container.OutputContainer) -> None:
        for key, value in self._source.metadata.items():
            if key.lower() not in _MUXER_TAGS:
                output.metadata[key] = value

    def _add(self, stream: av.stream.Stream, output: av.container.OutputContainer) -> None:
        if is_attached_picture(stream) and attaches_pictures(output.format.name):
            picture = attached_picture(self._path, stream.index)
            output.add_attachment(picture.name, picture.mimetype, picture.data)
            return
        out = output.add_stream_from_template(stream)
        for key, value in stream.metadata.items():
            if key.lower() not in _MUXER_TAGS:
                out.metadata[key] = value
        out.disposition = stream.disposition
        self._map[stream.index] = out

    def _demux(self) -> Iterator[av.Packet]:
        if not self._map:
            return
        streams = [self._source.streams[i] for i in self._map]
        continuity = Continuity(self._source)  # as the decoder moves the video's
        primer: dict[int, av.Packet] = {}  # by stream: the latest packet an edit list hides
        for packet in self._source.demux(streams):
            if packet.dts is None and packet.pts is None and not (
                    packet.size and is_attached_picture(packet.stream)):
                # The flush packet demux ends with carries nothing to copy; cover art is
                # one untimed packet, muxed first.
                continue
            if packet.is_discard:
                # Before an MP4 edit list's start (a file cut with -c copy): no part of the
                # output, but for the packet just before the start, which the decoder needs
                # to prime itself (AAC's first frame is only encoder delay).
                primer[packet.stream.index] = packet
                continue
            held = primer.pop(packet.stream.index, None)
            for copy in (held, packet) if held is not None else (packet,):
                continuity.follow_on(copy)
                yield copy

    def mux_until(self, output: av.container.OutputContainer, seconds: float | None) -> None:
        """Mux copied packets whose time is before ``seconds`` (all when None)."""
        while True:
            if self._held is None:
                self._held = next(self._packets, None)
                if self._held is None:
                    return
            packet = self._held
            stamp = packet.dts if packet.dts is not None else packet.pts
            if seconds is not None and stamp is not None and (
                    float(stamp * packet.time_base) - self._shift_s > seconds):
                return
            self._held = None
            if self._shift_s:
                ticks = round(self._shift_s / packet.time_base)
                if packet.pts is not None:
                    packet.pts -= ticks
                if packet.dts is not None:
                    packet.dts -= ticks
            index = packet.stream.index
            self._keep_rising(packet)
            # mux() rescales from the packet's time base to the new stream's.
            packet.stream = self._map[index]
            try:
                output.mux(packet)
            except av.ArgumentError as exc:
                # A packet this muxer will not take must not end the run after the whole
                # upscale: it is dropped, and said so once for its stream.
                self._warn(index, f"dropping a packet it cannot write ({exc.strerror})")

    def _keep_rising(self, packet: av.Packet) -> None:
        """Give ``packet`` a decode time after its stream's last, as muxers require.

        ffmpeg's DVB subtitle muxing writes a page's clearing packet 1 ms before the page
        it follows (1.480 s, then 1.479 s); the muxer refuses the file at the end.
        """
        index, dts = packet.stream.index, packet.dts
        if dts is None:
            return
        last = self._last_dts.get(index)
        if last is not None and dts <= last:
            # In the source's own times, as a player of the source shows them.
            back, after = (float(t * packet.time_base) + self._shift_s for t in (dts, last))
            self._warn(index, f"its decode times go back ({back:.3f} s after {after:.3f} s);"
                              " moved forward to keep them rising")
            dts = packet.dts = last + 1
            if packet.pts is not None and packet.pts < dts:
                packet.pts = dts
        self._last_dts[index] = dts

    def _warn(self, index: int, what: str) -> None:
        if index not in self._warned:
            self._warned.add(index)
            log.warning("%s: stream %s: %s", self._path, StreamSummary.of(
                self._source.streams[index]), what)

    def finish(self, output: av.container.OutputContainer) -> None:
        """Mux every remaining copied packet."""
        self.mux_until(output, None)

    def close(self) -> None:
        self._source.close()
