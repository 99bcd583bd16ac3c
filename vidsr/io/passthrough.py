"""Copy a source's non-video streams, metadata and chapters into an output, as packets.

The source is opened a second time so its audio/subtitle/data packets can be
read at the pace of the video being written: before the encoder muxes video
up to time t, :meth:`PassThrough.mux_until` muxes the copied packets up to t,
and :meth:`PassThrough.finish` writes the rest. Nothing is re-encoded.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import av
import av.container

from vidsr.io.probe import open_input

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
        with av.open(io.BytesIO(), "w", format=format_name) as scratch:
            scratch.add_stream_from_template(stream)
            scratch.start_encoding()
    except (av.FFmpegError, ValueError) as exc:
        return str(exc).replace("'<none>' returned", "muxer returned")
    return None


class PassThrough:
    """The non-video streams of ``source`` mapped into ``output``.

    Create it after the output's video stream and before the header is
    written; streams the output container cannot hold are named in a warning.
    """

    def __init__(self, source: Path, output: av.container.OutputContainer,
                 video_index: int) -> None:
        self._source = open_input(source)
        try:
            self._map: dict[int, av.stream.Stream] = {}
            self._copy_metadata(output)
            chapters = self._source.chapters()
            if chapters:
                output.set_chapters(chapters)
            out_name = output.format.name
            for stream in self._source.streams:
                if stream.index == video_index:
                    continue
                self._add(stream, output, out_name, has_chapters=bool(chapters))
            self._packets = self._demux()
            self._held: av.Packet | None = None
        except BaseException:
            self._source.close()
            raise

    @property
    def stream_count(self) -> int:
        return len(self._map)

    @property
    def copied_indices(self) -> list[int]:
        """Source stream indices that are copied (the --ffmpeg sink maps the same ones)."""
        return sorted(self._map)

    def _copy_metadata(self, output: av.container.OutputContainer) -> None:
        for key, value in self._source.metadata.items():
            if key.lower() not in _MUXER_TAGS:
                output.metadata[key] = value

    def _add(self, stream: av.stream.Stream, output: av.container.OutputContainer,
             out_name: str, *, has_chapters: bool) -> None:
        codec = stream.codec_context.name if stream.codec_context else (
            getattr(stream, "name", None) or "data")
        label = f"#{stream.index} ({stream.type}, {codec})"
        if stream.type not in _COPIED_TYPES:
            log.warning("dropping stream %s: only one video stream is upscaled", label)
            return
        if (stream.type == "data" and has_chapters
                and "mp4" in self._source.format.name.split(",")):
            # MP4 keeps chapter titles in a text track; the chapters are copied as chapters.
            log.debug("not copying stream %s: it is the MP4 chapter track", label)
            return
        refusal = header_refusal(stream, out_name)
        if refusal is not None:
            log.warning("dropping stream %s: %s cannot hold it (%s)", label, out_name, refusal)
            return
        try:
            out = output.add_stream_from_template(stream)
        except (ValueError, av.FFmpegError) as exc:
            log.warning("dropping stream %s: %s cannot hold it (%s)", label, out_name, exc)
            return
        for key, value in stream.metadata.items():
            if key.lower() not in _MUXER_TAGS:
                out.metadata[key] = value
        out.disposition = stream.disposition
        self._map[stream.index] = out

    def _demux(self) -> Iterator[av.Packet]:
        if not self._map:
            return
        streams = [self._source.streams[i] for i in self._map]
        for packet in self._source.demux(streams):
            if packet.dts is None and packet.pts is None:
                continue  # the flush packet demux ends with carries nothing to copy
            yield packet

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
                    float(stamp * packet.time_base) > seconds):
                return
            self._held = None
            # mux() rescales from the packet's time base to the new stream's.
            packet.stream = self._map[packet.stream.index]
            output.mux(packet)

    def finish(self, output: av.container.OutputContainer) -> None:
        """Mux every remaining copied packet."""
        self.mux_until(output, None)

    def close(self) -> None:
        self._source.close()
