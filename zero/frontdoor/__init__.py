"""The front door: everything a request passes on its way into a zero.

It translates requests onto the replica, the state and the leader duties; it holds no
replicated state of its own. The modules, each one concept:

- interceptor: the one place every gRPC call passes through (authorization, leader
  hints, error classification, metrics), one wrapper for every kind of call;
- forwarding: calls passed on to the leader, StreamMembership followed across failovers;
- auth: the admin token;
- zero_service, admin_service: the Zero and ZeroAdmin servicers, thin translations;
- wire: method names, metadata keys and the hand-written encoders of the bytes fast path;
- liveness, mirror: who is alive as the leader sees it, and a follower's mirror of it;
- stream: the membership stream's fan-out (MembershipHub);
- http, dgraph_http: the HTTP port (health, state, metrics, status page, Dgraph's verbs).

zero/app.py builds these and registers them with the node; none registers itself.
"""
