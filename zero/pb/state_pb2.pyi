from zero.pb import zero_pb2 as _zero_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MovePhase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MOVE_PHASE_UNSPECIFIED: _ClassVar[MovePhase]
    MOVE_COPYING: _ClassVar[MovePhase]
    MOVE_COMMITTED: _ClassVar[MovePhase]
    MOVE_ABORTED: _ClassVar[MovePhase]
    MOVE_FENCED: _ClassVar[MovePhase]
MOVE_PHASE_UNSPECIFIED: MovePhase
MOVE_COPYING: MovePhase
MOVE_COMMITTED: MovePhase
MOVE_ABORTED: MovePhase
MOVE_FENCED: MovePhase

class Proposal(_message.Message):
    __slots__ = ("key", "connect", "remove_member", "claim_tablets", "force_tablet", "tablet_sizes", "start_move", "commit_move", "abort_move", "lease_ids", "add_zero", "remove_zero", "set_cluster_id", "set_rebalance", "decide_txns", "advance_safe_ts", "set_placement", "set_group_replicas", "drain_group", "delete_tablet", "bump_lease", "fence_move")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONNECT_FIELD_NUMBER: _ClassVar[int]
    REMOVE_MEMBER_FIELD_NUMBER: _ClassVar[int]
    CLAIM_TABLETS_FIELD_NUMBER: _ClassVar[int]
    FORCE_TABLET_FIELD_NUMBER: _ClassVar[int]
    TABLET_SIZES_FIELD_NUMBER: _ClassVar[int]
    START_MOVE_FIELD_NUMBER: _ClassVar[int]
    COMMIT_MOVE_FIELD_NUMBER: _ClassVar[int]
    ABORT_MOVE_FIELD_NUMBER: _ClassVar[int]
    LEASE_IDS_FIELD_NUMBER: _ClassVar[int]
    ADD_ZERO_FIELD_NUMBER: _ClassVar[int]
    REMOVE_ZERO_FIELD_NUMBER: _ClassVar[int]
    SET_CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    SET_REBALANCE_FIELD_NUMBER: _ClassVar[int]
    DECIDE_TXNS_FIELD_NUMBER: _ClassVar[int]
    ADVANCE_SAFE_TS_FIELD_NUMBER: _ClassVar[int]
    SET_PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    SET_GROUP_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    DRAIN_GROUP_FIELD_NUMBER: _ClassVar[int]
    DELETE_TABLET_FIELD_NUMBER: _ClassVar[int]
    BUMP_LEASE_FIELD_NUMBER: _ClassVar[int]
    FENCE_MOVE_FIELD_NUMBER: _ClassVar[int]
    key: str
    connect: ConnectMember
    remove_member: RemoveMember
    claim_tablets: ClaimTablets
    force_tablet: ForceTablet
    tablet_sizes: _zero_pb2.TabletSizes
    start_move: StartMove
    commit_move: CommitMove
    abort_move: AbortMove
    lease_ids: LeaseIds
    add_zero: AddZero
    remove_zero: RemoveZero
    set_cluster_id: SetClusterId
    set_rebalance: SetRebalanceEnabled
    decide_txns: DecideTxns
    advance_safe_ts: AdvanceSafeTs
    set_placement: SetPlacement
    set_group_replicas: SetGroupReplicas
    drain_group: DrainGroup
    delete_tablet: DeleteTablet
    bump_lease: _zero_pb2.BumpLeaseRequest
    fence_move: FenceMove
    def __init__(self, key: _Optional[str] = ..., connect: _Optional[_Union[ConnectMember, _Mapping]] = ..., remove_member: _Optional[_Union[RemoveMember, _Mapping]] = ..., claim_tablets: _Optional[_Union[ClaimTablets, _Mapping]] = ..., force_tablet: _Optional[_Union[ForceTablet, _Mapping]] = ..., tablet_sizes: _Optional[_Union[_zero_pb2.TabletSizes, _Mapping]] = ..., start_move: _Optional[_Union[StartMove, _Mapping]] = ..., commit_move: _Optional[_Union[CommitMove, _Mapping]] = ..., abort_move: _Optional[_Union[AbortMove, _Mapping]] = ..., lease_ids: _Optional[_Union[LeaseIds, _Mapping]] = ..., add_zero: _Optional[_Union[AddZero, _Mapping]] = ..., remove_zero: _Optional[_Union[RemoveZero, _Mapping]] = ..., set_cluster_id: _Optional[_Union[SetClusterId, _Mapping]] = ..., set_rebalance: _Optional[_Union[SetRebalanceEnabled, _Mapping]] = ..., decide_txns: _Optional[_Union[DecideTxns, _Mapping]] = ..., advance_safe_ts: _Optional[_Union[AdvanceSafeTs, _Mapping]] = ..., set_placement: _Optional[_Union[SetPlacement, _Mapping]] = ..., set_group_replicas: _Optional[_Union[SetGroupReplicas, _Mapping]] = ..., drain_group: _Optional[_Union[DrainGroup, _Mapping]] = ..., delete_tablet: _Optional[_Union[DeleteTablet, _Mapping]] = ..., bump_lease: _Optional[_Union[_zero_pb2.BumpLeaseRequest, _Mapping]] = ..., fence_move: _Optional[_Union[FenceMove, _Mapping]] = ...) -> None: ...

class DecideTxns(_message.Message):
    __slots__ = ("txns", "first_commit_ts")
    TXNS_FIELD_NUMBER: _ClassVar[int]
    FIRST_COMMIT_TS_FIELD_NUMBER: _ClassVar[int]
    txns: _containers.RepeatedCompositeFieldContainer[_zero_pb2.CommitRequest]
    first_commit_ts: int
    def __init__(self, txns: _Optional[_Iterable[_Union[_zero_pb2.CommitRequest, _Mapping]]] = ..., first_commit_ts: _Optional[int] = ...) -> None: ...

class AdvanceSafeTs(_message.Message):
    __slots__ = ("safe_ts", "purge_below")
    SAFE_TS_FIELD_NUMBER: _ClassVar[int]
    PURGE_BELOW_FIELD_NUMBER: _ClassVar[int]
    safe_ts: int
    purge_below: int
    def __init__(self, safe_ts: _Optional[int] = ..., purge_below: _Optional[int] = ...) -> None: ...

class OracleSnapshot(_message.Message):
    __slots__ = ("safe_ts", "last_commit_ts", "purged_below", "keys", "key_commit_ts", "start_ts", "commit_ts", "reason", "decided_at")
    SAFE_TS_FIELD_NUMBER: _ClassVar[int]
    LAST_COMMIT_TS_FIELD_NUMBER: _ClassVar[int]
    PURGED_BELOW_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    KEY_COMMIT_TS_FIELD_NUMBER: _ClassVar[int]
    START_TS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_TS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    safe_ts: int
    last_commit_ts: int
    purged_below: int
    keys: _containers.RepeatedScalarFieldContainer[int]
    key_commit_ts: _containers.RepeatedScalarFieldContainer[int]
    start_ts: _containers.RepeatedScalarFieldContainer[int]
    commit_ts: _containers.RepeatedScalarFieldContainer[int]
    reason: _containers.RepeatedScalarFieldContainer[int]
    decided_at: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, safe_ts: _Optional[int] = ..., last_commit_ts: _Optional[int] = ..., purged_below: _Optional[int] = ..., keys: _Optional[_Iterable[int]] = ..., key_commit_ts: _Optional[_Iterable[int]] = ..., start_ts: _Optional[_Iterable[int]] = ..., commit_ts: _Optional[_Iterable[int]] = ..., reason: _Optional[_Iterable[int]] = ..., decided_at: _Optional[_Iterable[int]] = ...) -> None: ...

class TxnDecisions(_message.Message):
    __slots__ = ("txns", "first_slot")
    TXNS_FIELD_NUMBER: _ClassVar[int]
    FIRST_SLOT_FIELD_NUMBER: _ClassVar[int]
    txns: _containers.RepeatedCompositeFieldContainer[_zero_pb2.CommitResponse]
    first_slot: int
    def __init__(self, txns: _Optional[_Iterable[_Union[_zero_pb2.CommitResponse, _Mapping]]] = ..., first_slot: _Optional[int] = ...) -> None: ...

class ConnectMember(_message.Message):
    __slots__ = ("id", "addr", "group_id", "learner", "replicas", "labels")
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
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    id: int
    addr: str
    group_id: int
    learner: bool
    replicas: int
    labels: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[int] = ..., addr: _Optional[str] = ..., group_id: _Optional[int] = ..., learner: _Optional[bool] = ..., replicas: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SetPlacement(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: _zero_pb2.PlacementPolicy
    def __init__(self, policy: _Optional[_Union[_zero_pb2.PlacementPolicy, _Mapping]] = ...) -> None: ...

class SetGroupReplicas(_message.Message):
    __slots__ = ("group_id", "replicas")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    replicas: int
    def __init__(self, group_id: _Optional[int] = ..., replicas: _Optional[int] = ...) -> None: ...

class DrainGroup(_message.Message):
    __slots__ = ("group_id", "undrain")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    UNDRAIN_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    undrain: bool
    def __init__(self, group_id: _Optional[int] = ..., undrain: _Optional[bool] = ...) -> None: ...

class DeleteTablet(_message.Message):
    __slots__ = ("predicate",)
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    predicate: str
    def __init__(self, predicate: _Optional[str] = ...) -> None: ...

class GroupSettings(_message.Message):
    __slots__ = ("replicas", "draining")
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    replicas: int
    draining: bool
    def __init__(self, replicas: _Optional[int] = ..., draining: _Optional[bool] = ...) -> None: ...

class RemoveMember(_message.Message):
    __slots__ = ("node_id", "group_id")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    group_id: int
    def __init__(self, node_id: _Optional[int] = ..., group_id: _Optional[int] = ...) -> None: ...

class ClaimTablets(_message.Message):
    __slots__ = ("tablets",)
    TABLETS_FIELD_NUMBER: _ClassVar[int]
    tablets: _containers.RepeatedCompositeFieldContainer[_zero_pb2.Tablet]
    def __init__(self, tablets: _Optional[_Iterable[_Union[_zero_pb2.Tablet, _Mapping]]] = ...) -> None: ...

class ForceTablet(_message.Message):
    __slots__ = ("predicate", "group_id")
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    predicate: str
    group_id: int
    def __init__(self, predicate: _Optional[str] = ..., group_id: _Optional[int] = ...) -> None: ...

class StartMove(_message.Message):
    __slots__ = ("predicate", "dst_group", "move_ts", "record_version", "now_ms", "size_bytes")
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    DST_GROUP_FIELD_NUMBER: _ClassVar[int]
    MOVE_TS_FIELD_NUMBER: _ClassVar[int]
    RECORD_VERSION_FIELD_NUMBER: _ClassVar[int]
    NOW_MS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    predicate: str
    dst_group: int
    move_ts: int
    record_version: int
    now_ms: int
    size_bytes: int
    def __init__(self, predicate: _Optional[str] = ..., dst_group: _Optional[int] = ..., move_ts: _Optional[int] = ..., record_version: _Optional[int] = ..., now_ms: _Optional[int] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class CommitMove(_message.Message):
    __slots__ = ("move_id", "bytes_copied", "keys_copied", "now_ms")
    MOVE_ID_FIELD_NUMBER: _ClassVar[int]
    BYTES_COPIED_FIELD_NUMBER: _ClassVar[int]
    KEYS_COPIED_FIELD_NUMBER: _ClassVar[int]
    NOW_MS_FIELD_NUMBER: _ClassVar[int]
    move_id: int
    bytes_copied: int
    keys_copied: int
    now_ms: int
    def __init__(self, move_id: _Optional[int] = ..., bytes_copied: _Optional[int] = ..., keys_copied: _Optional[int] = ..., now_ms: _Optional[int] = ...) -> None: ...

class AbortMove(_message.Message):
    __slots__ = ("move_id", "reason", "now_ms")
    MOVE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    NOW_MS_FIELD_NUMBER: _ClassVar[int]
    move_id: int
    reason: str
    now_ms: int
    def __init__(self, move_id: _Optional[int] = ..., reason: _Optional[str] = ..., now_ms: _Optional[int] = ...) -> None: ...

class FenceMove(_message.Message):
    __slots__ = ("move_id", "now_ms", "bytes_copied", "keys_copied")
    MOVE_ID_FIELD_NUMBER: _ClassVar[int]
    NOW_MS_FIELD_NUMBER: _ClassVar[int]
    BYTES_COPIED_FIELD_NUMBER: _ClassVar[int]
    KEYS_COPIED_FIELD_NUMBER: _ClassVar[int]
    move_id: int
    now_ms: int
    bytes_copied: int
    keys_copied: int
    def __init__(self, move_id: _Optional[int] = ..., now_ms: _Optional[int] = ..., bytes_copied: _Optional[int] = ..., keys_copied: _Optional[int] = ...) -> None: ...

class LeaseIds(_message.Message):
    __slots__ = ("kind", "count")
    KIND_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    kind: _zero_pb2.IdKind
    count: int
    def __init__(self, kind: _Optional[_Union[_zero_pb2.IdKind, str]] = ..., count: _Optional[int] = ...) -> None: ...

class AddZero(_message.Message):
    __slots__ = ("raft_id", "addr", "version")
    RAFT_ID_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    raft_id: int
    addr: str
    version: int
    def __init__(self, raft_id: _Optional[int] = ..., addr: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class RemoveZero(_message.Message):
    __slots__ = ("raft_id",)
    RAFT_ID_FIELD_NUMBER: _ClassVar[int]
    raft_id: int
    def __init__(self, raft_id: _Optional[int] = ...) -> None: ...

class SetClusterId(_message.Message):
    __slots__ = ("cluster_id",)
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    def __init__(self, cluster_id: _Optional[str] = ...) -> None: ...

class SetRebalanceEnabled(_message.Message):
    __slots__ = ("enabled",)
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    def __init__(self, enabled: _Optional[bool] = ...) -> None: ...

class MoveRecord(_message.Message):
    __slots__ = ("move_id", "predicate", "src_group", "dst_group", "move_ts", "phase", "started_index", "finished_index", "prev_move_ts", "abort_reason", "record_version", "bytes_copied", "keys_copied", "size_bytes", "started_ms", "updated_ms")
    MOVE_ID_FIELD_NUMBER: _ClassVar[int]
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    SRC_GROUP_FIELD_NUMBER: _ClassVar[int]
    DST_GROUP_FIELD_NUMBER: _ClassVar[int]
    MOVE_TS_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    STARTED_INDEX_FIELD_NUMBER: _ClassVar[int]
    FINISHED_INDEX_FIELD_NUMBER: _ClassVar[int]
    PREV_MOVE_TS_FIELD_NUMBER: _ClassVar[int]
    ABORT_REASON_FIELD_NUMBER: _ClassVar[int]
    RECORD_VERSION_FIELD_NUMBER: _ClassVar[int]
    BYTES_COPIED_FIELD_NUMBER: _ClassVar[int]
    KEYS_COPIED_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    STARTED_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_MS_FIELD_NUMBER: _ClassVar[int]
    move_id: int
    predicate: str
    src_group: int
    dst_group: int
    move_ts: int
    phase: MovePhase
    started_index: int
    finished_index: int
    prev_move_ts: int
    abort_reason: str
    record_version: int
    bytes_copied: int
    keys_copied: int
    size_bytes: int
    started_ms: int
    updated_ms: int
    def __init__(self, move_id: _Optional[int] = ..., predicate: _Optional[str] = ..., src_group: _Optional[int] = ..., dst_group: _Optional[int] = ..., move_ts: _Optional[int] = ..., phase: _Optional[_Union[MovePhase, str]] = ..., started_index: _Optional[int] = ..., finished_index: _Optional[int] = ..., prev_move_ts: _Optional[int] = ..., abort_reason: _Optional[str] = ..., record_version: _Optional[int] = ..., bytes_copied: _Optional[int] = ..., keys_copied: _Optional[int] = ..., size_bytes: _Optional[int] = ..., started_ms: _Optional[int] = ..., updated_ms: _Optional[int] = ...) -> None: ...

class TabletList(_message.Message):
    __slots__ = ("tablets",)
    TABLETS_FIELD_NUMBER: _ClassVar[int]
    tablets: _containers.RepeatedCompositeFieldContainer[_zero_pb2.Tablet]
    def __init__(self, tablets: _Optional[_Iterable[_Union[_zero_pb2.Tablet, _Mapping]]] = ...) -> None: ...

class ProposalResult(_message.Message):
    __slots__ = ("member", "tablets", "ids", "move", "ok", "decisions", "policy", "group")
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    TABLETS_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    MOVE_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    member: _zero_pb2.Member
    tablets: TabletList
    ids: _zero_pb2.AssignedIds
    move: MoveRecord
    ok: bool
    decisions: TxnDecisions
    policy: _zero_pb2.PlacementPolicy
    group: GroupSettings
    def __init__(self, member: _Optional[_Union[_zero_pb2.Member, _Mapping]] = ..., tablets: _Optional[_Union[TabletList, _Mapping]] = ..., ids: _Optional[_Union[_zero_pb2.AssignedIds, _Mapping]] = ..., move: _Optional[_Union[MoveRecord, _Mapping]] = ..., ok: _Optional[bool] = ..., decisions: _Optional[_Union[TxnDecisions, _Mapping]] = ..., policy: _Optional[_Union[_zero_pb2.PlacementPolicy, _Mapping]] = ..., group: _Optional[_Union[GroupSettings, _Mapping]] = ...) -> None: ...

class DedupRecord(_message.Message):
    __slots__ = ("key", "index", "result")
    KEY_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    key: str
    index: int
    result: ProposalResult
    def __init__(self, key: _Optional[str] = ..., index: _Optional[int] = ..., result: _Optional[_Union[ProposalResult, _Mapping]] = ...) -> None: ...

class ZeroStateSnapshot(_message.Message):
    __slots__ = ("format", "state", "next_member_id", "next_raft_id", "next_move_id", "active_move_id", "moves", "dedup", "rebalance_disabled", "zero_versions", "oracle", "placement", "group_settings")
    class ZeroVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    class GroupSettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: GroupSettings
        def __init__(self, key: _Optional[int] = ..., value: _Optional[_Union[GroupSettings, _Mapping]] = ...) -> None: ...
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NEXT_MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    NEXT_RAFT_ID_FIELD_NUMBER: _ClassVar[int]
    NEXT_MOVE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_MOVE_ID_FIELD_NUMBER: _ClassVar[int]
    MOVES_FIELD_NUMBER: _ClassVar[int]
    DEDUP_FIELD_NUMBER: _ClassVar[int]
    REBALANCE_DISABLED_FIELD_NUMBER: _ClassVar[int]
    ZERO_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    ORACLE_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    GROUP_SETTINGS_FIELD_NUMBER: _ClassVar[int]
    format: int
    state: _zero_pb2.MembershipState
    next_member_id: int
    next_raft_id: int
    next_move_id: int
    active_move_id: int
    moves: _containers.RepeatedCompositeFieldContainer[MoveRecord]
    dedup: _containers.RepeatedCompositeFieldContainer[DedupRecord]
    rebalance_disabled: bool
    zero_versions: _containers.ScalarMap[int, int]
    oracle: OracleSnapshot
    placement: _zero_pb2.PlacementPolicy
    group_settings: _containers.MessageMap[int, GroupSettings]
    def __init__(self, format: _Optional[int] = ..., state: _Optional[_Union[_zero_pb2.MembershipState, _Mapping]] = ..., next_member_id: _Optional[int] = ..., next_raft_id: _Optional[int] = ..., next_move_id: _Optional[int] = ..., active_move_id: _Optional[int] = ..., moves: _Optional[_Iterable[_Union[MoveRecord, _Mapping]]] = ..., dedup: _Optional[_Iterable[_Union[DedupRecord, _Mapping]]] = ..., rebalance_disabled: _Optional[bool] = ..., zero_versions: _Optional[_Mapping[int, int]] = ..., oracle: _Optional[_Union[OracleSnapshot, _Mapping]] = ..., placement: _Optional[_Union[_zero_pb2.PlacementPolicy, _Mapping]] = ..., group_settings: _Optional[_Mapping[int, GroupSettings]] = ...) -> None: ...

class BackupHeader(_message.Message):
    __slots__ = ("format", "cluster_id", "raft_index", "raft_term", "created_unix_ms", "state_version", "max_uid", "max_txn_ts", "leader_id", "cluster_version")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    RAFT_INDEX_FIELD_NUMBER: _ClassVar[int]
    RAFT_TERM_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    STATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_UID_FIELD_NUMBER: _ClassVar[int]
    MAX_TXN_TS_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    format: int
    cluster_id: str
    raft_index: int
    raft_term: int
    created_unix_ms: int
    state_version: int
    max_uid: int
    max_txn_ts: int
    leader_id: int
    cluster_version: int
    def __init__(self, format: _Optional[int] = ..., cluster_id: _Optional[str] = ..., raft_index: _Optional[int] = ..., raft_term: _Optional[int] = ..., created_unix_ms: _Optional[int] = ..., state_version: _Optional[int] = ..., max_uid: _Optional[int] = ..., max_txn_ts: _Optional[int] = ..., leader_id: _Optional[int] = ..., cluster_version: _Optional[int] = ...) -> None: ...
