"""Operations: what operators run beside the daemon.

Backups and disaster recovery (`zero restore`, `--force-new-cluster`), `zero local`
(a whole cluster in one command) and `zero admin`'s verbs.
"""
