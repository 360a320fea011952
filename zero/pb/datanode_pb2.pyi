from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MoveTabletCommand(_message.Message):
    __slots__ = ("move_id", "predicate", "src_group", "dst_group", "dst_addrs", "move_ts", "cluster_id")
    MOVE_ID_FIELD_NUMBER: _ClassVar[int]
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    SRC_GROUP_FIELD_NUMBER: _ClassVar[int]
    DST_GROUP_FIELD_NUMBER: _ClassVar[int]
    DST_ADDRS_FIELD_NUMBER: _ClassVar[int]
    MOVE_TS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    move_id: int
    predicate: str
    src_group: int
    dst_group: int
    dst_addrs: _containers.RepeatedScalarFieldContainer[str]
    move_ts: int
    cluster_id: str
    def __init__(self, move_id: _Optional[int] = ..., predicate: _Optional[str] = ..., src_group: _Optional[int] = ..., dst_group: _Optional[int] = ..., dst_addrs: _Optional[_Iterable[str]] = ..., move_ts: _Optional[int] = ..., cluster_id: _Optional[str] = ...) -> None: ...

class MoveTabletResult(_message.Message):
    __slots__ = ("move_id", "keys", "size_bytes")
    MOVE_ID_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    move_id: int
    keys: int
    size_bytes: int
    def __init__(self, move_id: _Optional[int] = ..., keys: _Optional[int] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class KeyValue(_message.Message):
    __slots__ = ("key", "value", "commit_ts")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    COMMIT_TS_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    commit_ts: int
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., commit_ts: _Optional[int] = ...) -> None: ...

class TabletChunk(_message.Message):
    __slots__ = ("move_id", "predicate", "src_group", "move_ts", "seq", "pairs", "last", "cluster_id", "safe_ts")
    MOVE_ID_FIELD_NUMBER: _ClassVar[int]
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    SRC_GROUP_FIELD_NUMBER: _ClassVar[int]
    MOVE_TS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    SAFE_TS_FIELD_NUMBER: _ClassVar[int]
    move_id: int
    predicate: str
    src_group: int
    move_ts: int
    seq: int
    pairs: _containers.RepeatedCompositeFieldContainer[KeyValue]
    last: bool
    cluster_id: str
    safe_ts: int
    def __init__(self, move_id: _Optional[int] = ..., predicate: _Optional[str] = ..., src_group: _Optional[int] = ..., move_ts: _Optional[int] = ..., seq: _Optional[int] = ..., pairs: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ..., last: _Optional[bool] = ..., cluster_id: _Optional[str] = ..., safe_ts: _Optional[int] = ...) -> None: ...

class ReceiveTabletResponse(_message.Message):
    __slots__ = ("move_id", "keys", "size_bytes")
    MOVE_ID_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    move_id: int
    keys: int
    size_bytes: int
    def __init__(self, move_id: _Optional[int] = ..., keys: _Optional[int] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class DropTabletRequest(_message.Message):
    __slots__ = ("move_id", "predicate", "cluster_id")
    MOVE_ID_FIELD_NUMBER: _ClassVar[int]
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    move_id: int
    predicate: str
    cluster_id: str
    def __init__(self, move_id: _Optional[int] = ..., predicate: _Optional[str] = ..., cluster_id: _Optional[str] = ...) -> None: ...

class DropTabletResponse(_message.Message):
    __slots__ = ("dropped",)
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    dropped: bool
    def __init__(self, dropped: _Optional[bool] = ...) -> None: ...

class PutRequest(_message.Message):
    __slots__ = ("tablet", "key", "value")
    TABLET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    tablet: str
    key: bytes
    value: bytes
    def __init__(self, tablet: _Optional[str] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ...) -> None: ...

class PutResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("tablet", "key")
    TABLET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    tablet: str
    key: bytes
    def __init__(self, tablet: _Optional[str] = ..., key: _Optional[bytes] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("found", "value")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    found: bool
    value: bytes
    def __init__(self, found: _Optional[bool] = ..., value: _Optional[bytes] = ...) -> None: ...

class TxnKey(_message.Message):
    __slots__ = ("tablet", "key")
    TABLET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    tablet: str
    key: bytes
    def __init__(self, tablet: _Optional[str] = ..., key: _Optional[bytes] = ...) -> None: ...

class TxnGetRequest(_message.Message):
    __slots__ = ("read_ts", "keys")
    READ_TS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    read_ts: int
    keys: _containers.RepeatedCompositeFieldContainer[TxnKey]
    def __init__(self, read_ts: _Optional[int] = ..., keys: _Optional[_Iterable[_Union[TxnKey, _Mapping]]] = ...) -> None: ...

class TxnValue(_message.Message):
    __slots__ = ("found", "value", "commit_ts")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    COMMIT_TS_FIELD_NUMBER: _ClassVar[int]
    found: bool
    value: bytes
    commit_ts: int
    def __init__(self, found: _Optional[bool] = ..., value: _Optional[bytes] = ..., commit_ts: _Optional[int] = ...) -> None: ...

class TxnGetResponse(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[TxnValue]
    def __init__(self, values: _Optional[_Iterable[_Union[TxnValue, _Mapping]]] = ...) -> None: ...

class TxnMutation(_message.Message):
    __slots__ = ("tablet", "key", "value")
    TABLET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    tablet: str
    key: bytes
    value: bytes
    def __init__(self, tablet: _Optional[str] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ...) -> None: ...

class PrewriteRequest(_message.Message):
    __slots__ = ("start_ts", "writes")
    START_TS_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    start_ts: int
    writes: _containers.RepeatedCompositeFieldContainer[TxnMutation]
    def __init__(self, start_ts: _Optional[int] = ..., writes: _Optional[_Iterable[_Union[TxnMutation, _Mapping]]] = ...) -> None: ...

class PrewriteResponse(_message.Message):
    __slots__ = ("group_id",)
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    def __init__(self, group_id: _Optional[int] = ...) -> None: ...
