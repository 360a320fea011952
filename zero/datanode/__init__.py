"""The reference data node (`zero datanode`): the example to copy when writing your own.

It talks to zero only through zero.client, as any data node would: connect, heartbeat,
claim tablets, follow the membership stream, serve moves.
"""
