"""The framing of the peer wire (zero/replica/wire_link.py, wire_server.py): pure bytes in,
whole frames out, no I/O.

A connection starts with MAGIC (the dialling zero sends it once, after TLS when
--tls-dir is set). Then each direction is a sequence of frames:

    length  uint32 big-endian   bytes of the payload (at most MAX_FRAME)
    crc     uint32 big-endian   CRC-32C (Castagnoli) of the payload
    payload                     a serialized RaftBatch (dialler -> listener: several
                                raftpb Messages, as on the gRPC stream) or a
                                RaftStreamResponse (listener -> dialler: a refusal)

A reader hands out only whole frames whose CRC matches. A torn frame waits for its
remaining bytes; a bad CRC, an oversized length or a wrong magic is a FrameError, after
which the connection is dropped (nothing of that frame, nor anything after it, is
delivered).
"""

from __future__ import annotations

import struct

import google_crc32c

__all__ = ["MAGIC", "MAX_FRAME", "HEADER", "FrameError", "frame", "FrameReader"]

MAGIC = b"ZRAFTW1\n"
MAX_FRAME = 64 << 20  # as the gRPC peer channels' message limit
HEADER = struct.Struct(">II")


class FrameError(Exception):
    """The stream is corrupt (`reason`: crc, oversize, magic): drop the connection."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def frame(payload: bytes) -> bytes:
    """One frame carrying `payload`."""
    if len(payload) > MAX_FRAME:
        raise ValueError(f"a frame of {len(payload)} bytes is over the {MAX_FRAME}-byte limit")
    return HEADER.pack(len(payload), google_crc32c.value(payload)) + payload


class FrameReader:
    """Whole frames out of a byte stream fed in pieces of any size."""

    __slots__ = ("_buf", "_magic", "_max", "_failed")

    def __init__(self, *, expect_magic: bool, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._magic = expect_magic
        self._max = max_frame
        self._failed = False

    def feed(self, data: bytes) -> list[bytes]:
        """The payloads of the frames `data` completes, in order. FrameError when the
        stream is corrupt; the reader then refuses everything after."""
        if self._failed:
            raise FrameError("closed", "the stream was corrupt before")
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        try:
            if self._magic:
                if len(buf) < len(MAGIC):
                    if MAGIC.startswith(bytes(buf)):
                        return out
                    raise FrameError("magic", "the connection does not speak zero's peer wire")
                if buf[:len(MAGIC)] != MAGIC:
                    raise FrameError("magic", "the connection does not speak zero's peer wire")
                self._magic = False
                pos = len(MAGIC)
            size = HEADER.size
            while len(buf) - pos >= size:
                length, crc = HEADER.unpack_from(buf, pos)
                if length > self._max:
                    raise FrameError("oversize", f"a frame of {length} bytes is over the {self._max}-byte limit")
                end = pos + size + length
                if len(buf) < end:
                    break
                payload = bytes(buf[pos + size:end])
                if google_crc32c.value(payload) != crc:
                    raise FrameError("crc", f"CRC-32C mismatch in a frame of {length} bytes")
                out.append(payload)
                pos = end
        except FrameError:
            self._failed = True
            buf.clear()
            raise
        del buf[:pos]
        return out

    @property
    def pending(self) -> int:
        """Bytes of a frame not complete yet."""
        return len(self._buf)
