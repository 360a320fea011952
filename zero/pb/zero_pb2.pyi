from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IdKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UID: _ClassVar[IdKind]
    TIMESTAMP: _ClassVar[IdKind]

class AbortReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOT_ABORTED: _ClassVar[AbortReason]
    CONFLICT: _ClassVar[AbortReason]
    TABLET_MOVING: _ClassVar[AbortReason]
    WRONG_GROUP: _ClassVar[AbortReason]
    TOO_OLD: _ClassVar[AbortReason]
    CLIENT_ABORT: _ClassVar[AbortReason]
UID: IdKind
TIMESTAMP: IdKind
NOT_ABORTED: AbortReason
CONFLICT: AbortReason
TABLET_MOVING: AbortReason
WRONG_GROUP: AbortReason
TOO_OLD: AbortReason
CLIENT_ABORT: AbortReason

class Member(_message.Message):
    __slots__ = ("id", "group_id", "addr", "leader", "learner", "healthy", "last_heartbeat_ms", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    LEARNER_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_MS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    id: int
    group_id: int
    addr: str
    leader: bool
    learner: bool
    healthy: bool
    last_heartbeat_ms: int
    labels: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[int] = ..., group_id: _Optional[int] = ..., addr: _Optional[str] = ..., leader: _Optional[bool] = ..., learner: _Optional[bool] = ..., healthy: _Optional[bool] = ..., last_heartbeat_ms: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Tablet(_message.Message):
    __slots__ = ("predicate", "group_id", "force", "size_bytes", "read_only", "move_ts", "read_rate", "write_rate")
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    MOVE_TS_FIELD_NUMBER: _ClassVar[int]
    READ_RATE_FIELD_NUMBER: _ClassVar[int]
    WRITE_RATE_FIELD_NUMBER: _ClassVar[int]
    predicate: str
    group_id: int
    force: bool
    size_bytes: int
    read_only: bool
    move_ts: int
    read_rate: float
    write_rate: float
    def __init__(self, predicate: _Optional[str] = ..., group_id: _Optional[int] = ..., force: _Optional[bool] = ..., size_bytes: _Optional[int] = ..., read_only: _Optional[bool] = ..., move_ts: _Optional[int] = ..., read_rate: _Optional[float] = ..., write_rate: _Optional[float] = ...) -> None: ...

class Group(_message.Message):
    __slots__ = ("members", "tablets")
    class MembersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: Member
        def __init__(self, key: _Optional[int] = ..., value: _Optional[_Union[Member, _Mapping]] = ...) -> None: ...
    class TabletsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Tablet
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Tablet, _Mapping]] = ...) -> None: ...
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    TABLETS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.MessageMap[int, Member]
    tablets: _containers.MessageMap[str, Tablet]
    def __init__(self, members: _Optional[_Mapping[int, Member]] = ..., tablets: _Optional[_Mapping[str, Tablet]] = ...) -> None: ...

class MembershipState(_message.Message):
    __slots__ = ("version", "groups", "zeros", "max_uid", "max_txn_ts", "cluster_id", "removed", "cluster_version")
    class GroupsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: Group
        def __init__(self, key: _Optional[int] = ..., value: _Optional[_Union[Group, _Mapping]] = ...) -> None: ...
    class ZerosEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: Member
        def __init__(self, key: _Optional[int] = ..., value: _Optional[_Union[Member, _Mapping]] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    ZEROS_FIELD_NUMBER: _ClassVar[int]
    MAX_UID_FIELD_NUMBER: _ClassVar[int]
    MAX_TXN_TS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    groups: _containers.MessageMap[int, Group]
    zeros: _containers.MessageMap[int, Member]
    max_uid: int
    max_txn_ts: int
    cluster_id: str
    removed: _containers.RepeatedCompositeFieldContainer[Member]
    cluster_version: int
    def __init__(self, version: _Optional[int] = ..., groups: _Optional[_Mapping[int, Group]] = ..., zeros: _Optional[_Mapping[int, Member]] = ..., max_uid: _Optional[int] = ..., max_txn_ts: _Optional[int] = ..., cluster_id: _Optional[str] = ..., removed: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., cluster_version: _Optional[int] = ...) -> None: ...

class AssignIdsRequest(_message.Message):
    __slots__ = ("kind", "count")
    KIND_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    kind: IdKind
    count: int
    def __init__(self, kind: _Optional[_Union[IdKind, str]] = ..., count: _Optional[int] = ...) -> None: ...

class TimestampsRequest(_message.Message):
    __slots__ = ("count", "read_only")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    count: int
    read_only: bool
    def __init__(self, count: _Optional[int] = ..., read_only: _Optional[bool] = ...) -> None: ...

class AssignedIds(_message.Message):
    __slots__ = ("start_id", "end_id")
    START_ID_FIELD_NUMBER: _ClassVar[int]
    END_ID_FIELD_NUMBER: _ClassVar[int]
    start_id: int
    end_id: int
    def __init__(self, start_id: _Optional[int] = ..., end_id: _Optional[int] = ...) -> None: ...

class ConnectRequest(_message.Message):
    __slots__ = ("id", "addr", "group_id", "learner", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    LEARNER_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    id: int
    addr: str
    group_id: int
    learner: bool
    labels: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[int] = ..., addr: _Optional[str] = ..., group_id: _Optional[int] = ..., learner: _Optional[bool] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ConnectResponse(_message.Message):
    __slots__ = ("member", "state")
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    member: Member
    state: MembershipState
    def __init__(self, member: _Optional[_Union[Member, _Mapping]] = ..., state: _Optional[_Union[MembershipState, _Mapping]] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("member_id", "group_id", "leader", "min_active_ts")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    MIN_ACTIVE_TS_FIELD_NUMBER: _ClassVar[int]
    member_id: int
    group_id: int
    leader: bool
    min_active_ts: int
    def __init__(self, member_id: _Optional[int] = ..., group_id: _Optional[int] = ..., leader: _Optional[bool] = ..., min_active_ts: _Optional[int] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class TabletSizes(_message.Message):
    __slots__ = ("group_id", "sizes", "read_rates", "write_rates")
    class SizesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class ReadRatesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class WriteRatesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    SIZES_FIELD_NUMBER: _ClassVar[int]
    READ_RATES_FIELD_NUMBER: _ClassVar[int]
    WRITE_RATES_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    sizes: _containers.ScalarMap[str, int]
    read_rates: _containers.ScalarMap[str, float]
    write_rates: _containers.ScalarMap[str, float]
    def __init__(self, group_id: _Optional[int] = ..., sizes: _Optional[_Mapping[str, int]] = ..., read_rates: _Optional[_Mapping[str, float]] = ..., write_rates: _Optional[_Mapping[str, float]] = ...) -> None: ...

class UpdateTabletSizesResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TabletsRequest(_message.Message):
    __slots__ = ("tablets",)
    TABLETS_FIELD_NUMBER: _ClassVar[int]
    tablets: _containers.RepeatedCompositeFieldContainer[Tablet]
    def __init__(self, tablets: _Optional[_Iterable[_Union[Tablet, _Mapping]]] = ...) -> None: ...

class TabletsResponse(_message.Message):
    __slots__ = ("tablets",)
    TABLETS_FIELD_NUMBER: _ClassVar[int]
    tablets: _containers.RepeatedCompositeFieldContainer[Tablet]
    def __init__(self, tablets: _Optional[_Iterable[_Union[Tablet, _Mapping]]] = ...) -> None: ...

class GetStateRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StreamMembershipRequest(_message.Message):
    __slots__ = ("since_version", "cluster_id")
    SINCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    since_version: int
    cluster_id: str
    def __init__(self, since_version: _Optional[int] = ..., cluster_id: _Optional[str] = ...) -> None: ...

class MembershipUpdate(_message.Message):
    __slots__ = ("version", "cluster_id", "full", "state", "removed_tablets", "removed_members", "last_chunk", "removed_zeros")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REMOVED_TABLETS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    LAST_CHUNK_FIELD_NUMBER: _ClassVar[int]
    REMOVED_ZEROS_FIELD_NUMBER: _ClassVar[int]
    version: int
    cluster_id: str
    full: bool
    state: MembershipState
    removed_tablets: _containers.RepeatedScalarFieldContainer[str]
    removed_members: _containers.RepeatedScalarFieldContainer[int]
    last_chunk: bool
    removed_zeros: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, version: _Optional[int] = ..., cluster_id: _Optional[str] = ..., full: _Optional[bool] = ..., state: _Optional[_Union[MembershipState, _Mapping]] = ..., removed_tablets: _Optional[_Iterable[str]] = ..., removed_members: _Optional[_Iterable[int]] = ..., last_chunk: _Optional[bool] = ..., removed_zeros: _Optional[_Iterable[int]] = ...) -> None: ...

class TxnWrite(_message.Message):
    __slots__ = ("predicate", "group_id")
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    predicate: str
    group_id: int
    def __init__(self, predicate: _Optional[str] = ..., group_id: _Optional[int] = ...) -> None: ...

class CommitRequest(_message.Message):
    __slots__ = ("start_ts", "conflict_keys", "writes", "abort")
    START_TS_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_KEYS_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    start_ts: int
    conflict_keys: _containers.RepeatedScalarFieldContainer[int]
    writes: _containers.RepeatedCompositeFieldContainer[TxnWrite]
    abort: bool
    def __init__(self, start_ts: _Optional[int] = ..., conflict_keys: _Optional[_Iterable[int]] = ..., writes: _Optional[_Iterable[_Union[TxnWrite, _Mapping]]] = ..., abort: _Optional[bool] = ...) -> None: ...

class CommitBatch(_message.Message):
    __slots__ = ("txns",)
    TXNS_FIELD_NUMBER: _ClassVar[int]
    txns: _containers.RepeatedCompositeFieldContainer[CommitRequest]
    def __init__(self, txns: _Optional[_Iterable[_Union[CommitRequest, _Mapping]]] = ...) -> None: ...

class CommitResponse(_message.Message):
    __slots__ = ("start_ts", "commit_ts", "aborted", "reason", "message", "code")
    START_TS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_TS_FIELD_NUMBER: _ClassVar[int]
    ABORTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    start_ts: int
    commit_ts: int
    aborted: bool
    reason: AbortReason
    message: str
    code: int
    def __init__(self, start_ts: _Optional[int] = ..., commit_ts: _Optional[int] = ..., aborted: _Optional[bool] = ..., reason: _Optional[_Union[AbortReason, str]] = ..., message: _Optional[str] = ..., code: _Optional[int] = ...) -> None: ...

class CommitBatchResponse(_message.Message):
    __slots__ = ("txns",)
    TXNS_FIELD_NUMBER: _ClassVar[int]
    txns: _containers.RepeatedCompositeFieldContainer[CommitResponse]
    def __init__(self, txns: _Optional[_Iterable[_Union[CommitResponse, _Mapping]]] = ...) -> None: ...

class TryAbortRequest(_message.Message):
    __slots__ = ("start_ts",)
    START_TS_FIELD_NUMBER: _ClassVar[int]
    start_ts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, start_ts: _Optional[_Iterable[int]] = ...) -> None: ...

class TryAbortResponse(_message.Message):
    __slots__ = ("txns",)
    TXNS_FIELD_NUMBER: _ClassVar[int]
    txns: _containers.RepeatedCompositeFieldContainer[CommitResponse]
    def __init__(self, txns: _Optional[_Iterable[_Union[CommitResponse, _Mapping]]] = ...) -> None: ...

class OracleRequest(_message.Message):
    __slots__ = ("since_ts",)
    SINCE_TS_FIELD_NUMBER: _ClassVar[int]
    since_ts: int
    def __init__(self, since_ts: _Optional[int] = ...) -> None: ...

class OracleDelta(_message.Message):
    __slots__ = ("txns", "max_assigned", "safe_ts")
    TXNS_FIELD_NUMBER: _ClassVar[int]
    MAX_ASSIGNED_FIELD_NUMBER: _ClassVar[int]
    SAFE_TS_FIELD_NUMBER: _ClassVar[int]
    txns: _containers.RepeatedCompositeFieldContainer[CommitResponse]
    max_assigned: int
    safe_ts: int
    def __init__(self, txns: _Optional[_Iterable[_Union[CommitResponse, _Mapping]]] = ..., max_assigned: _Optional[int] = ..., safe_ts: _Optional[int] = ...) -> None: ...

class RemoveNodeRequest(_message.Message):
    __slots__ = ("node_id", "group_id")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    group_id: int
    def __init__(self, node_id: _Optional[int] = ..., group_id: _Optional[int] = ...) -> None: ...

class RemoveNodeResponse(_message.Message):
    __slots__ = ("removed", "version")
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    removed: Member
    version: int
    def __init__(self, removed: _Optional[_Union[Member, _Mapping]] = ..., version: _Optional[int] = ...) -> None: ...

class MoveTabletRequest(_message.Message):
    __slots__ = ("predicate", "dst_group", "detach")
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    DST_GROUP_FIELD_NUMBER: _ClassVar[int]
    DETACH_FIELD_NUMBER: _ClassVar[int]
    predicate: str
    dst_group: int
    detach: bool
    def __init__(self, predicate: _Optional[str] = ..., dst_group: _Optional[int] = ..., detach: _Optional[bool] = ...) -> None: ...

class MoveTabletResponse(_message.Message):
    __slots__ = ("move_id", "tablet", "committed", "message")
    MOVE_ID_FIELD_NUMBER: _ClassVar[int]
    TABLET_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    move_id: int
    tablet: Tablet
    committed: bool
    message: str
    def __init__(self, move_id: _Optional[int] = ..., tablet: _Optional[_Union[Tablet, _Mapping]] = ..., committed: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class MoveStatus(_message.Message):
    __slots__ = ("move_id", "predicate", "src_group", "dst_group", "phase", "bytes_copied", "keys_copied", "size_bytes", "started_ms", "updated_ms", "message")
    MOVE_ID_FIELD_NUMBER: _ClassVar[int]
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    SRC_GROUP_FIELD_NUMBER: _ClassVar[int]
    DST_GROUP_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    BYTES_COPIED_FIELD_NUMBER: _ClassVar[int]
    KEYS_COPIED_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    STARTED_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_MS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    move_id: int
    predicate: str
    src_group: int
    dst_group: int
    phase: str
    bytes_copied: int
    keys_copied: int
    size_bytes: int
    started_ms: int
    updated_ms: int
    message: str
    def __init__(self, move_id: _Optional[int] = ..., predicate: _Optional[str] = ..., src_group: _Optional[int] = ..., dst_group: _Optional[int] = ..., phase: _Optional[str] = ..., bytes_copied: _Optional[int] = ..., keys_copied: _Optional[int] = ..., size_bytes: _Optional[int] = ..., started_ms: _Optional[int] = ..., updated_ms: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class GetMovesRequest(_message.Message):
    __slots__ = ("move_id",)
    MOVE_ID_FIELD_NUMBER: _ClassVar[int]
    move_id: int
    def __init__(self, move_id: _Optional[int] = ...) -> None: ...

class GetMovesResponse(_message.Message):
    __slots__ = ("moves",)
    MOVES_FIELD_NUMBER: _ClassVar[int]
    moves: _containers.RepeatedCompositeFieldContainer[MoveStatus]
    def __init__(self, moves: _Optional[_Iterable[_Union[MoveStatus, _Mapping]]] = ...) -> None: ...

class CancelMoveRequest(_message.Message):
    __slots__ = ("move_id",)
    MOVE_ID_FIELD_NUMBER: _ClassVar[int]
    move_id: int
    def __init__(self, move_id: _Optional[int] = ...) -> None: ...

class CancelMoveResponse(_message.Message):
    __slots__ = ("move",)
    MOVE_FIELD_NUMBER: _ClassVar[int]
    move: MoveStatus
    def __init__(self, move: _Optional[_Union[MoveStatus, _Mapping]] = ...) -> None: ...

class TransferLeadershipRequest(_message.Message):
    __slots__ = ("transferee",)
    TRANSFEREE_FIELD_NUMBER: _ClassVar[int]
    transferee: int
    def __init__(self, transferee: _Optional[int] = ...) -> None: ...

class TransferLeadershipResponse(_message.Message):
    __slots__ = ("leader_id",)
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    leader_id: int
    def __init__(self, leader_id: _Optional[int] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SnapshotResponse(_message.Message):
    __slots__ = ("index", "term", "size_bytes")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    index: int
    term: int
    size_bytes: int
    def __init__(self, index: _Optional[int] = ..., term: _Optional[int] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class RaftStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RaftProgress(_message.Message):
    __slots__ = ("match", "next", "state", "recent_active", "paused", "inflight", "learner")
    MATCH_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RECENT_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    INFLIGHT_FIELD_NUMBER: _ClassVar[int]
    LEARNER_FIELD_NUMBER: _ClassVar[int]
    match: int
    next: int
    state: str
    recent_active: bool
    paused: bool
    inflight: int
    learner: bool
    def __init__(self, match: _Optional[int] = ..., next: _Optional[int] = ..., state: _Optional[str] = ..., recent_active: _Optional[bool] = ..., paused: _Optional[bool] = ..., inflight: _Optional[int] = ..., learner: _Optional[bool] = ...) -> None: ...

class RaftStatusResponse(_message.Message):
    __slots__ = ("id", "term", "vote", "lead", "commit", "applied", "role", "progress", "cluster_id", "leader_addr", "oracle")
    class ProgressEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: RaftProgress
        def __init__(self, key: _Optional[int] = ..., value: _Optional[_Union[RaftProgress, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    VOTE_FIELD_NUMBER: _ClassVar[int]
    LEAD_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDR_FIELD_NUMBER: _ClassVar[int]
    ORACLE_FIELD_NUMBER: _ClassVar[int]
    id: int
    term: int
    vote: int
    lead: int
    commit: int
    applied: int
    role: str
    progress: _containers.MessageMap[int, RaftProgress]
    cluster_id: str
    leader_addr: str
    oracle: OracleStatus
    def __init__(self, id: _Optional[int] = ..., term: _Optional[int] = ..., vote: _Optional[int] = ..., lead: _Optional[int] = ..., commit: _Optional[int] = ..., applied: _Optional[int] = ..., role: _Optional[str] = ..., progress: _Optional[_Mapping[int, RaftProgress]] = ..., cluster_id: _Optional[str] = ..., leader_addr: _Optional[str] = ..., oracle: _Optional[_Union[OracleStatus, _Mapping]] = ...) -> None: ...

class OracleStatus(_message.Message):
    __slots__ = ("serving", "max_assigned", "safe_ts", "commits", "aborts", "pending", "conflict_keys", "decisions", "purged_below")
    class AbortsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SERVING_FIELD_NUMBER: _ClassVar[int]
    MAX_ASSIGNED_FIELD_NUMBER: _ClassVar[int]
    SAFE_TS_FIELD_NUMBER: _ClassVar[int]
    COMMITS_FIELD_NUMBER: _ClassVar[int]
    ABORTS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_KEYS_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    PURGED_BELOW_FIELD_NUMBER: _ClassVar[int]
    serving: bool
    max_assigned: int
    safe_ts: int
    commits: int
    aborts: _containers.ScalarMap[str, int]
    pending: int
    conflict_keys: int
    decisions: int
    purged_below: int
    def __init__(self, serving: _Optional[bool] = ..., max_assigned: _Optional[int] = ..., safe_ts: _Optional[int] = ..., commits: _Optional[int] = ..., aborts: _Optional[_Mapping[str, int]] = ..., pending: _Optional[int] = ..., conflict_keys: _Optional[int] = ..., decisions: _Optional[int] = ..., purged_below: _Optional[int] = ...) -> None: ...

class SetRebalanceRequest(_message.Message):
    __slots__ = ("mode",)
    class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        MODE_UNSPECIFIED: _ClassVar[SetRebalanceRequest.Mode]
        ON: _ClassVar[SetRebalanceRequest.Mode]
        OFF: _ClassVar[SetRebalanceRequest.Mode]
        NOW: _ClassVar[SetRebalanceRequest.Mode]
    MODE_UNSPECIFIED: SetRebalanceRequest.Mode
    ON: SetRebalanceRequest.Mode
    OFF: SetRebalanceRequest.Mode
    NOW: SetRebalanceRequest.Mode
    MODE_FIELD_NUMBER: _ClassVar[int]
    mode: SetRebalanceRequest.Mode
    def __init__(self, mode: _Optional[_Union[SetRebalanceRequest.Mode, str]] = ...) -> None: ...

class SetRebalanceResponse(_message.Message):
    __slots__ = ("enabled", "started_moves")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    STARTED_MOVES_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    started_moves: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, enabled: _Optional[bool] = ..., started_moves: _Optional[_Iterable[int]] = ...) -> None: ...

class BackupRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BackupChunk(_message.Message):
    __slots__ = ("data", "offset", "total_size", "last", "version", "cluster_id")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offset: int
    total_size: int
    last: bool
    version: int
    cluster_id: str
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ..., total_size: _Optional[int] = ..., last: _Optional[bool] = ..., version: _Optional[int] = ..., cluster_id: _Optional[str] = ...) -> None: ...

class PlacementRule(_message.Message):
    __slots__ = ("tablet_glob", "pin_group", "constraints")
    TABLET_GLOB_FIELD_NUMBER: _ClassVar[int]
    PIN_GROUP_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    tablet_glob: str
    pin_group: int
    constraints: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tablet_glob: _Optional[str] = ..., pin_group: _Optional[int] = ..., constraints: _Optional[_Iterable[str]] = ...) -> None: ...

class PlacementPolicy(_message.Message):
    __slots__ = ("rules", "spread_label", "version", "dry_run", "status", "moves")
    RULES_FIELD_NUMBER: _ClassVar[int]
    SPREAD_LABEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MOVES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[PlacementRule]
    spread_label: str
    version: int
    dry_run: bool
    status: _containers.RepeatedScalarFieldContainer[str]
    moves: _containers.RepeatedCompositeFieldContainer[PlacementExplanation]
    def __init__(self, rules: _Optional[_Iterable[_Union[PlacementRule, _Mapping]]] = ..., spread_label: _Optional[str] = ..., version: _Optional[int] = ..., dry_run: _Optional[bool] = ..., status: _Optional[_Iterable[str]] = ..., moves: _Optional[_Iterable[_Union[PlacementExplanation, _Mapping]]] = ...) -> None: ...

class GetPlacementRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetGroupReplicasRequest(_message.Message):
    __slots__ = ("group_id", "replicas")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    replicas: int
    def __init__(self, group_id: _Optional[int] = ..., replicas: _Optional[int] = ...) -> None: ...

class SetGroupReplicasResponse(_message.Message):
    __slots__ = ("group_id", "replicas", "surplus")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    SURPLUS_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    replicas: int
    surplus: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, group_id: _Optional[int] = ..., replicas: _Optional[int] = ..., surplus: _Optional[_Iterable[int]] = ...) -> None: ...

class DrainGroupRequest(_message.Message):
    __slots__ = ("group_id", "undrain")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    UNDRAIN_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    undrain: bool
    def __init__(self, group_id: _Optional[int] = ..., undrain: _Optional[bool] = ...) -> None: ...

class DrainGroupResponse(_message.Message):
    __slots__ = ("group_id", "draining", "tablets_left")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    TABLETS_LEFT_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    draining: bool
    tablets_left: int
    def __init__(self, group_id: _Optional[int] = ..., draining: _Optional[bool] = ..., tablets_left: _Optional[int] = ...) -> None: ...

class PlacementExplanation(_message.Message):
    __slots__ = ("tablet", "reasons", "satisfied", "target_group")
    TABLET_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    SATISFIED_FIELD_NUMBER: _ClassVar[int]
    TARGET_GROUP_FIELD_NUMBER: _ClassVar[int]
    tablet: Tablet
    reasons: _containers.RepeatedScalarFieldContainer[str]
    satisfied: bool
    target_group: int
    def __init__(self, tablet: _Optional[_Union[Tablet, _Mapping]] = ..., reasons: _Optional[_Iterable[str]] = ..., satisfied: _Optional[bool] = ..., target_group: _Optional[int] = ...) -> None: ...

class DeleteTabletResponse(_message.Message):
    __slots__ = ("deleted", "version")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    deleted: Tablet
    version: int
    def __init__(self, deleted: _Optional[_Union[Tablet, _Mapping]] = ..., version: _Optional[int] = ...) -> None: ...

class BumpLeaseRequest(_message.Message):
    __slots__ = ("kind", "floor")
    KIND_FIELD_NUMBER: _ClassVar[int]
    FLOOR_FIELD_NUMBER: _ClassVar[int]
    kind: IdKind
    floor: int
    def __init__(self, kind: _Optional[_Union[IdKind, str]] = ..., floor: _Optional[int] = ...) -> None: ...
