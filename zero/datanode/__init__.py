"""The reference data node (`zero datanode`): the example to copy when writing your own.

It talks to zero only through zero.client, as any data node would: connect, heartbeat
(with min_active_ts), claim tablets, follow the membership and Oracle streams, serve
moves, commit transactions through the oracle.

    server.py        the DataNode service, lifecycle and background duties
    store.py         versioned key/values per tablet (MVCC), in memory or a data dir
    pending.py       prewritten writes on disk; the group commit of versions and them
    transactions.py  held writes, reads at a timestamp, decisions from the Oracle stream
    txn_service.py   TxnGet, Prewrite, and Put as a transaction of one write
    moves.py         the fence, the copy of versions, drops
    txn.py           the client: TxnClient.begin()/snapshot(), Txn.get/put/commit/abort
    cli.py           `zero datanode`'s flags
"""
