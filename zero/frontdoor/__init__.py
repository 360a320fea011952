"""The front door: everything a request passes on its way into a zero.

The gRPC servicers (Zero, ZeroAdmin), the interceptor (authorization, leader hints,
forwarding to the leader, error classification, metrics), data-node liveness, the
membership stream, the HTTP port (health, state, metrics, status page, Dgraph's verbs).
It translates requests onto the replica, the state and the leader duties; it holds no
replicated state of its own.
"""
