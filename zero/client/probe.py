"""Is there a zero at this address? The check a new zero makes of its --peer before it
joins the cluster through it: a TCP connection, then the gRPC health check of the Zero
service, retried with a log line per retry until a deadline.

What the answers mean: a refused or silent port is retried (the peer may still be
starting); gRPC without the Zero service (NOT_FOUND, UNIMPLEMENTED) is not a zero, at
once; a port that accepts connections but does not answer gRPC three times in a row (a
zero's HTTP port, or a TLS mismatch) is not a zero either.
"""

from __future__ import annotations

import asyncio
import os

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from zero.log import Logger
from zero.net import split_addr

__all__ = ["NotAZeroError", "await_zero", "ZERO_SERVICE", "PROBE_TIMEOUT", "PROBE_PERIOD"]

ZERO_SERVICE = "zero.v1.Zero"
PROBE_TIMEOUT = 2.0  # seconds for one try at the address
PROBE_PERIOD = 1.0  # seconds between those tries


class NotAZeroError(Exception):
    """The address is not a zero, or did not answer within the time given; the message
    says which and what to check (it names the --peer and --join-timeout flags)."""


async def await_zero(peer: str, *, timeout: float, credentials: grpc.ChannelCredentials | None,
                     log: Logger) -> float:
    """Wait until `peer` answers as a zero, logging each retry with what is wrong and
    how long is left, for at most `timeout` seconds; returns the time left (at least
    1 s) for what comes next (the join). NotAZeroError when it is not a zero (see the
    module's docstring) or the time ran out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    host, port = split_addr(peer)
    not_grpc = 0
    while True:
        began = loop.time()
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), PROBE_TIMEOUT)
            writer.close()
        except (OSError, asyncio.TimeoutError) as e:
            problem = ((os.strerror(e.errno) if e.errno else str(e)) if isinstance(e, OSError)
                       else f"no answer within {PROBE_TIMEOUT:g}s")
        else:
            ch = (grpc.aio.secure_channel(peer, credentials) if credentials is not None
                  else grpc.aio.insecure_channel(peer))
            try:
                # types-grpcio-health-checking's HealthStub declares no methods.
                await health_pb2_grpc.HealthStub(ch).Check(  # type: ignore[attr-defined]
                    health_pb2.HealthCheckRequest(service=ZERO_SERVICE), timeout=PROBE_TIMEOUT)
                return max(1.0, deadline - loop.time())
            except grpc.aio.AioRpcError as e:
                code, problem = e.code(), f"{e.code().name}: {e.details()}"
                if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNIMPLEMENTED):
                    raise NotAZeroError(f"--peer {peer} answers gRPC but is not a zero (no {ZERO_SERVICE} "
                                        f"service); give the gRPC address of a live zero") from None
                not_grpc = not_grpc + 1 if code == grpc.StatusCode.UNAVAILABLE else 0
                if not_grpc >= 3:
                    hint = ("over TLS: give the gRPC port of a zero whose cluster uses --tls-dir with the same "
                            "CA" if credentials is not None else ": give a zero's gRPC port, not its HTTP port "
                            "(and --tls-dir if that cluster uses TLS)")
                    raise NotAZeroError(f"--peer {peer} accepts connections but does not answer gRPC{hint} "
                                        f"({problem})") from None
            finally:
                await ch.close()
        left = deadline - loop.time()
        if left <= 0:
            raise NotAZeroError(f"--peer {peer} did not answer within {timeout:g}s (last: {problem}); check "
                                f"the address, or wait longer with --join-timeout")
        log.warning("waiting for --peer to answer before joining", peer=peer, error=problem,
                    gives_up_in=f"{left:.0f}s")
        await asyncio.sleep(min(left, max(0.0, PROBE_PERIOD - (loop.time() - began))))
