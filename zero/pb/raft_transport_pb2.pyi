from raftcore.raftpb import raft_pb2 as _raft_pb2
from zero.pb import zero_pb2 as _zero_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RaftProtocol(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RAFT_PROTOCOL_UNSPECIFIED: _ClassVar[RaftProtocol]
    RAFT_PROTOCOL_V1: _ClassVar[RaftProtocol]
RAFT_PROTOCOL_UNSPECIFIED: RaftProtocol
RAFT_PROTOCOL_V1: RaftProtocol

class RaftBatch(_message.Message):
    __slots__ = ("protocol", "cluster_id", "from_id", "to_id", "messages")
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_ID_FIELD_NUMBER: _ClassVar[int]
    TO_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    protocol: RaftProtocol
    cluster_id: str
    from_id: int
    to_id: int
    messages: _containers.RepeatedCompositeFieldContainer[_raft_pb2.Message]
    def __init__(self, protocol: _Optional[_Union[RaftProtocol, str]] = ..., cluster_id: _Optional[str] = ..., from_id: _Optional[int] = ..., to_id: _Optional[int] = ..., messages: _Optional[_Iterable[_Union[_raft_pb2.Message, _Mapping]]] = ...) -> None: ...

class RaftStreamResponse(_message.Message):
    __slots__ = ("refusal", "message", "batches")
    class Refusal(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ACCEPTED: _ClassVar[RaftStreamResponse.Refusal]
        CLUSTER_MISMATCH: _ClassVar[RaftStreamResponse.Refusal]
        NOT_A_MEMBER: _ClassVar[RaftStreamResponse.Refusal]
        REMOVED: _ClassVar[RaftStreamResponse.Refusal]
        UNSUPPORTED_PROTOCOL: _ClassVar[RaftStreamResponse.Refusal]
    ACCEPTED: RaftStreamResponse.Refusal
    CLUSTER_MISMATCH: RaftStreamResponse.Refusal
    NOT_A_MEMBER: RaftStreamResponse.Refusal
    REMOVED: RaftStreamResponse.Refusal
    UNSUPPORTED_PROTOCOL: RaftStreamResponse.Refusal
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    refusal: RaftStreamResponse.Refusal
    message: str
    batches: int
    def __init__(self, refusal: _Optional[_Union[RaftStreamResponse.Refusal, str]] = ..., message: _Optional[str] = ..., batches: _Optional[int] = ...) -> None: ...

class SnapshotChunk(_message.Message):
    __slots__ = ("protocol", "cluster_id", "from_id", "to_id", "message", "offset", "data", "total_size", "last", "crc32c")
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_ID_FIELD_NUMBER: _ClassVar[int]
    TO_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    CRC32C_FIELD_NUMBER: _ClassVar[int]
    protocol: RaftProtocol
    cluster_id: str
    from_id: int
    to_id: int
    message: _raft_pb2.Message
    offset: int
    data: bytes
    total_size: int
    last: bool
    crc32c: int
    def __init__(self, protocol: _Optional[_Union[RaftProtocol, str]] = ..., cluster_id: _Optional[str] = ..., from_id: _Optional[int] = ..., to_id: _Optional[int] = ..., message: _Optional[_Union[_raft_pb2.Message, _Mapping]] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., total_size: _Optional[int] = ..., last: _Optional[bool] = ..., crc32c: _Optional[int] = ...) -> None: ...

class SnapshotChunkResponse(_message.Message):
    __slots__ = ("refusal", "message", "applied")
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    refusal: RaftStreamResponse.Refusal
    message: str
    applied: bool
    def __init__(self, refusal: _Optional[_Union[RaftStreamResponse.Refusal, str]] = ..., message: _Optional[str] = ..., applied: _Optional[bool] = ...) -> None: ...

class JoinClusterRequest(_message.Message):
    __slots__ = ("raft_id", "addr", "cluster_id", "protocol", "learner", "version")
    RAFT_ID_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    LEARNER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    raft_id: int
    addr: str
    cluster_id: str
    protocol: RaftProtocol
    learner: bool
    version: int
    def __init__(self, raft_id: _Optional[int] = ..., addr: _Optional[str] = ..., cluster_id: _Optional[str] = ..., protocol: _Optional[_Union[RaftProtocol, str]] = ..., learner: _Optional[bool] = ..., version: _Optional[int] = ...) -> None: ...

class JoinClusterResponse(_message.Message):
    __slots__ = ("raft_id", "cluster_id", "peers")
    RAFT_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    raft_id: int
    cluster_id: str
    peers: _containers.RepeatedCompositeFieldContainer[_zero_pb2.Member]
    def __init__(self, raft_id: _Optional[int] = ..., cluster_id: _Optional[str] = ..., peers: _Optional[_Iterable[_Union[_zero_pb2.Member, _Mapping]]] = ...) -> None: ...
