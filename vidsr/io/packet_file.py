"""A segment's encoded video, stored as the encoder gave it, to be muxed later.

A long file is upscaled in segments (:mod:`vidsr.commands.batch.segments`); each segment's
packets wait in a file of this format until every segment is done and one output is
muxed from them all. Any media container would change what it stores (NUT rebuilds
decode timestamps, Matroska rounds to milliseconds), so this keeps exactly what the
mux needs: each packet's bytes, pts, dts, duration and keyframe flag, in the encoder's
time base. The file is written under a temporary name and published whole, so one
that exists is complete.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import av

from vidsr.errors import InputError

MAGIC = b"vidsr-packets 1\n"
_RECORD = struct.Struct("<qqqIB")  # pts, dts, duration, size, keyframe
_NONE = -(1 << 63)  # a missing pts or dts


class PacketWriter:
    """Append packets counted in ``time_base`` to a new file at ``path``."""

    def __init__(self, path: Path, time_base: Fraction) -> None:
        self.path = Path(path)
        self.time_base = time_base
        self.packets = 0
        self._file: BinaryIO = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        header = json.dumps({"time_base": str(time_base)}).encode()
        self._file.write(MAGIC + header + b"\n")

    def write(self, packet: av.Packet) -> None:
        data = bytes(packet)
        if packet.time_base is not None and packet.time_base != self.time_base:
            raise ValueError(f"packet counts in {packet.time_base}, the file in"
                             f" {self.time_base}")
        self._file.write(_RECORD.pack(_stored(packet.pts), _stored(packet.dts),
                                      packet.duration or 0, len(data),
                                      1 if packet.is_keyframe else 0))
        self._file.write(data)
        self.packets += 1

    def close(self) -> None:
        """Flush the packets to disk (a published segment must survive a power cut)."""
        if self._file.closed:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def __enter__(self) -> PacketWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def read_packets(path: Path) -> Iterator[av.Packet]:
    """The packets of a file :class:`PacketWriter` wrote, with their timing, in order."""
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise InputError(f"{path}: not a vidsr segment file")
        time_base = Fraction(json.loads(f.readline())["time_base"])
        while head := f.read(_RECORD.size):
            if len(head) < _RECORD.size:
                raise InputError(f"{path}: segment file cut off")
            pts, dts, duration, size, key = _RECORD.unpack(head)
            data = f.read(size)
            if len(data) < size:
                raise InputError(f"{path}: segment file cut off")
            packet = av.Packet(data)
            packet.time_base = time_base
            packet.pts = None if pts == _NONE else pts
            packet.dts = None if dts == _NONE else dts
            packet.duration = duration
            packet.is_keyframe = bool(key)
            yield packet


def _stored(stamp: int | None) -> int:
    return _NONE if stamp is None else stamp
