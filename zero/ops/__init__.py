"""Operations: what operators run beside the daemon.

    backup      the backup file: header, encoding, verification, atomic writes
    recovery    `zero restore` and `--force-new-cluster`: a new cluster from files
    local       `zero local`: a whole cluster of child processes, supervised
    local_plan  its node count and ports, kept in DATA_DIR/local.json
    admin       `zero admin`'s verbs, as gRPC calls to a running zero
"""

__all__ = ["admin", "backup", "local", "local_plan", "recovery"]
