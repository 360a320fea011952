"""zero's gRPC wire as the front door handles it by hand: method paths and metadata keys,
the message size limit, the types of what a servicer receives and answers, and the
protobuf encoders that build a reply from parts already serialized.

Bytes are a fast path. GetState and Connect answer with the state serialized once per
version and shared by every caller, StreamMembership sends each update serialized once
for all its watchers, and a forwarded call passes the leader's serialized reply on
untouched. A servicer method that answers bytes says so in its signature (`-> bytes`,
the serialized message its service declares); the interceptor's response serializer
lets bytes through on every method that may answer them (zero/frontdoor/interceptor.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc
from google.protobuf.message import Message

__all__ = [
    "ADMIN_PREFIX",
    "Context",
    "FORWARDED_MD",
    "FORWARD_MD_KEYS",
    "LOCAL_METHODS",
    "MAX_MESSAGE_BYTES",
    "MEMBERSHIP_STREAM",
    "Reply",
    "Request",
    "ZERO_PREFIX",
    "identity",
    "len_field",
    "varint",
]

MAX_MESSAGE_BYTES = 16 << 20
ZERO_PREFIX = "/zero.v1.Zero/"
ADMIN_PREFIX = "/zero.v1.ZeroAdmin/"
MEMBERSHIP_STREAM = "/zero.v1.Zero/StreamMembership"
# Answered by whichever zero is asked (everything else of zero.v1 is forwarded to the leader).
LOCAL_METHODS = frozenset({"/zero.v1.ZeroAdmin/RaftStatus"})
# Set on a call a follower forwards, so the leader never forwards it again (one hop).
FORWARDED_MD = "zero-forwarded"
# Request metadata a forwarded call carries on to the leader.
FORWARD_MD_KEYS = frozenset({"authorization"})

# What a servicer answers: its message, or that message already serialized (see above).
Reply: TypeAlias = Message | bytes
# What a handler receives: one message, or a client stream's messages.
Request: TypeAlias = Message | AsyncIterator[Message]
# A servicer's context, whatever the method (the message types vary by method).
Context: TypeAlias = "grpc.aio.ServicerContext[Message, Reply]"


def identity(b: bytes) -> bytes:
    """The (de)serializer of a call whose messages pass through as bytes."""
    return b


def varint(n: int) -> bytes:
    """A protobuf base-128 varint (n >= 0)."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def len_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2): a message field's encoding."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload
