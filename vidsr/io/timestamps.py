"""Where a video stream's frame timestamps come from, and which frames went missing.

Containers keep time in three ways, and a decoder hands frames back in
presentation order in all of them:

- ``pts``: packets carry presentation timestamps (MP4, MOV, Matroska, MPEG-TS,
  NUT). A frame comes out with its packet's pts, so a remembered pts below it
  belongs to a frame the decoder lost, and a frame whose pts is not past the
  last one handed on is late (its slot was already filled by a stand-in),
  unless a packet of its own still waits at that pts: then the file gives
  several frames one time (all at 0, or repeated), and the frame is retimed a
  nominal frame after the last one instead of dropped.
- ``index``: packets carry only their place in the stream (AVI stores one
  chunk per frame period, zero-size chunks for dropped frames). With B-frames
  the packet order is not the presentation order, so the pts a decoder copies
  onto a frame mean nothing; the frames, in presentation order, take the
  packets' time slots in ascending order instead.
- ``count``: no timestamps at all (raw .h264, .hevc, .m4v elementary streams):
  frames are counted at the nominal rate.

Formats whose timestamps may restart (MPEG-TS: recordings joined with ``cat``)
are made continuous first, stream by stream, as FFmpeg's own tools do
(:class:`Continuity`): the part after a restart follows on from the part before.
"""

from __future__ import annotations

import heapq
from fractions import Fraction
from typing import Literal

import av
import av.container
import av.stream

TimestampMode = Literal["pts", "index", "count"]

_AVFMT_NOTIMESTAMPS = 0x0080  # the demuxer's packets carry no timestamps at all
_AVFMT_TS_DISCONT = 0x0200  # the demuxer's timestamps may restart (MPEG-TS, MPEG-PS)
# How far a stream's decode times may go back, or leap on, before they count as a restart
# rather than jitter or a gap in the recording: FFmpeg's own limits for such formats.
_RESTART_BACK_S = 0.1
_RESTART_LEAP_S = 10.0
# Demuxers whose packet timestamps are positions in decode order, not presentation times.
_INDEX_FORMATS = frozenset({"avi"})


def timestamp_mode(container: av.container.InputContainer) -> TimestampMode:
    """How ``container``'s video packets carry time."""
    if container.format.flags & _AVFMT_NOTIMESTAMPS:
        return "count"
    if container.format.name in _INDEX_FORMATS:
        return "index"
    return "pts"


LATE = object()  # what :meth:`Timeline.frame` returns for a frame to drop


class Timeline:
    """The timestamps of one stream's frames, from the packets sent to its decoder.

    ``step`` is one nominal frame in the stream's time base (for counting).
    """

    def __init__(self, mode: TimestampMode, step: int | None) -> None:
        self.mode = mode
        self.step = step or 1
        self._pending: list[int] = []  # time slots of packets whose frame has not come out
        self.last: int | None = None  # the timestamp last handed on
        self.spacing: int | None = None  # the least time between two frames handed on
        self.retimed = 0  # frames whose own pts did not advance, counted on at ``step``

    def packet(self, packet: av.Packet) -> int | None:
        """Remember a packet sent to the decoder; its time slot (None when it has none)."""
        key = packet.dts if self.mode == "index" else packet.pts
        if key is None:
            key = packet.pts if self.mode == "index" else packet.dts
        if key is not None and self.mode != "count":
            heapq.heappush(self._pending, key)
        return key

    def forget(self, key: int | None) -> None:
        """A packet the decoder refused: its slot will not be filled by a frame."""
        if key is not None and key in self._pending:
            self._pending.remove(key)
            heapq.heapify(self._pending)

    def frame(self, frame_pts: int | None) -> tuple[int | object, list[int]]:
        """The timestamp of the next frame out of the decoder (or :data:`LATE`), and the
        slots before it whose frames were lost."""
        if self.mode == "pts" and frame_pts is not None:
            if self.last is not None and frame_pts <= self.last:
                if frame_pts not in self._pending:
                    return LATE, []  # its slot went to a stand-in
                # A packet of its own still waits at this pts: the file gives several frames
                # one time (all at 0, or repeated). The frame is kept, a step after the last.
                self.forget(frame_pts)
                self.retimed += 1
                return self.handed(self.next_slot()), []
            lost = []
            while self._pending and self._pending[0] < frame_pts:
                lost.append(heapq.heappop(self._pending))
            if self._pending and self._pending[0] == frame_pts:
                heapq.heappop(self._pending)
            return self.handed(frame_pts), lost
        if self._pending:
            return self.handed(heapq.heappop(self._pending)), []
        return self.handed(self.next_slot()), []

    def next_slot(self) -> int:
        """The slot one nominal frame after the last one (0 for the first)."""
        return 0 if self.last is None else self.last + self.step

    def remaining(self) -> list[int]:
        """Slots still waiting when the stream ended: frames the decoder never gave back."""
        lost, self._pending = sorted(self._pending), []
        return lost

    def handed(self, stamp: int) -> int:
        """Record ``stamp`` as the last one handed on (a frame's, or a stand-in's)."""
        if self.last is not None and stamp > self.last:
            self.spacing = min(stamp - self.last, self.spacing or stamp - self.last)
        self.last = stamp
        return stamp


class Continuity:
    """Where a file's timestamps restart (joined MPEG-TS recordings), the streams' packets
    moved to follow on from what came before: each audio or video stream by its own offset,
    the sparse ones (subtitles, data) by the latest offset of those. Each stream follows on
    from its own end, so each stays monotonic (a muxer refuses less); the parts' streams
    keep in sync but for how much longer one of them lasted in the part before (a frame).

    Inactive (nothing moved) for formats whose timestamps cannot restart.
    """

    def __init__(self, container: av.container.InputContainer) -> None:
        self.active = bool(container.format.flags & _AVFMT_TS_DISCONT)
        self._offset: dict[int, int] = {}  # by stream index, in its time base
        self._due: dict[int, int] = {}  # where each stream's next packet was due, moved
        self._latest = Fraction(0)  # the latest restart's offset, in seconds

    def follow_on(self, packet: av.Packet) -> tuple[float, float] | None:
        """Move ``packet`` by its stream's offset. Where its time restarts, a new offset
        makes it follow on; then (seconds it was due at, seconds it carried)."""
        stamp = packet.dts if packet.dts is not None else packet.pts
        if not self.active or stamp is None:
            return None
        index, base = packet.stream.index, packet.time_base
        if packet.stream.type not in ("video", "audio"):
            # Sparse streams have gaps longer than any limit: they go where the others went.
            _move(packet, round(self._latest / base))
            return None
        offset = self._offset.get(index, 0)
        due = self._due.get(index)
        restart = None
        if due is not None:
            late = (stamp + offset - due) * base
            if late < -_RESTART_BACK_S or late > _RESTART_LEAP_S:
                restart = (float(due * base), float(stamp * base))
                offset = self._offset[index] = due - stamp
                self._latest = offset * base
        _move(packet, offset)
        self._due[index] = stamp + offset + (packet.duration or 0)
        return restart


def _move(packet: av.Packet, ticks: int) -> None:
    if ticks:
        if packet.pts is not None:
            packet.pts += ticks
        if packet.dts is not None:
            packet.dts += ticks


def first_restart(container: av.container.InputContainer) -> tuple[float, float] | None:
    """Where the time of ``container``'s audio or video first restarts (seconds it was due
    at, seconds it carried); None where it never does. Reads every packet's header, from a
    second opening of the file."""
    if not Continuity(container).active:
        return None
    with av.open(container.name) as again:
        continuity = Continuity(again)
        for packet in again.demux():
            restart = continuity.follow_on(packet)
            if restart is not None:
                return restart
    return None


# Muxers that write an edit list of their own, so a copied stream may start before zero.
_EDIT_LIST_MUXERS = frozenset({"mov", "mp4", "ipod", "3gp", "3g2", "psp", "ismv", "f4v"})


def hidden_lead_in(container: av.container.InputContainer, video_index: int) -> int | None:
    """The first stream of ``container`` besides the video that starts with more packets
    than one that an MP4 edit list hides (a file cut with ``-c copy``; one is the encoder
    delay of any AAC track), or None. Reads the file's first packets, from a second
    opening."""
    if "mov" not in container.format.name.split(","):
        return None
    with av.open(container.name) as again:
        waiting = {s.index for s in again.streams if s.index != video_index}
        hidden: dict[int, int] = {}
        for packet in again.demux([again.streams[i] for i in waiting]):
            index = packet.stream.index
            if not packet.is_discard:
                waiting.discard(index)
                if not waiting:
                    break
            elif index in waiting:
                hidden[index] = hidden.get(index, 0) + 1
                if hidden[index] > 1:
                    return index
    return None


def keeps_lead_in(muxer: str) -> bool:
    """Whether a ``muxer`` output hides a copied stream's lead-in behind an edit list."""
    return muxer in _EDIT_LIST_MUXERS


def stream_start(container: av.container.InputContainer, stream: av.stream.Stream) -> int:
    """Where the output's timeline starts, in ``stream``'s time base.

    Players expect a file to start near zero. A source that starts later (an
    MPEG-TS cut from a broadcast, a camera file) is shifted back by the container's
    start, so all streams keep their relative timing; a negative start (audio
    priming) is the container's business and is kept.
    """
    if container.start_time is None or container.start_time <= 0:
        return 0
    return round(container.start_time / av.time_base / stream.time_base)
