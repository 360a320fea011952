"""The credentials of the gRPC channels `zero run` opens (to peer zeros, to the leader
for forwarded calls, the join call, data nodes during moves), and what a reload of the
served certificates changes for them (reload.py says what it changes on the ports).

Channels created after a reload present the new node.crt and trust the new ca.crt; the
channels zero dials data nodes with are all replaced (the old ones close at stop: a move
may be using one). A channel already open keeps the credentials it was created with,
also when it reconnects, until the process restarts: gRPC cannot change a channel's
credentials. Hence the warning each reload logs, with the earliest notAfter such a
channel may still present.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Sequence
from typing import Protocol

import grpc

from zero.log import Logger
from zero.security.certs import TlsError, format_utc
from zero.security.reload import ServerTls

__all__ = ["CredentialsUser", "OutboundTls"]

ChannelOptions = Sequence[tuple[str, object]]


class CredentialsUser(Protocol):
    """Something that creates channels with the credentials it is given (the peer transport)."""

    credentials: grpc.ChannelCredentials | None


class OutboundTls:
    """The current outbound credentials of one zero, following its ServerTls."""

    def __init__(self, tls: ServerTls, log: Logger, *, datanode_options: ChannelOptions) -> None:
        self._tls = tls
        self._log = log
        self._datanode_options = list(datanode_options)
        self.credentials = tls.channel_credentials()
        # The earliest notAfter a channel that is open (or was opened) may present.
        self._expiry: datetime.datetime | None = tls.config.expires
        self._users: list[CredentialsUser] = []
        self._datanode_channels: dict[str, grpc.aio.Channel] = {}  # dials of data nodes (moves)
        self._retired: list[grpc.aio.Channel] = []  # data-node dials from before a reload

    def follow(self, user: CredentialsUser) -> None:
        """Give `user` the current credentials now and after every reload."""
        user.credentials = self.credentials
        self._users.append(user)

    def dial(self, addr: str, options: ChannelOptions) -> grpc.aio.Channel:
        """A new channel with the credentials current now."""
        return grpc.aio.secure_channel(addr, self.credentials, options=list(options))

    def dial_datanode(self, addr: str) -> grpc.aio.Channel:
        """A data node's channel for tablet moves, kept for the next move to it until a reload."""
        ch = self._datanode_channels.get(addr)
        if ch is None:
            ch = self._datanode_channels[addr] = self.dial(addr, self._datanode_options)
        return ch

    def reload(self, reason: str) -> bool:
        """Re-read --tls-dir: True when new connections (served and opened) now use new
        certificates. A bad set of files is logged as an error and the old certificates
        stay (ServerTls.reload)."""
        tls, log = self._tls, self._log
        try:
            changed = tls.reload()
        except TlsError as e:
            log.error("TLS reload failed; still serving the old certificates", reason=reason, error=str(e),
                      tls_serial=f"{tls.config.serial:x}", tls_not_after=tls.config.not_after)
            return False
        if not changed:
            log.info("TLS files unchanged; nothing reloaded", reason=reason)
            return False
        creds = self.credentials = tls.channel_credentials()
        expiries = [t for t in (self._expiry, tls.config.expires) if t is not None]
        self._expiry = min(expiries) if expiries else None
        for user in self._users:
            user.credentials = creds  # e.g. peer channels created from now on
        if self._expiry is not None:
            log.warning("gRPC channels already open (to peer zeros, the leader, this zero's own port) keep "
                        "presenting the certificate they started with until this zero restarts; restart it "
                        "(one zero at a time) before that certificate expires", reason=reason,
                        expires=format_utc(self._expiry))
        # Data-node dials are replaced: the next move dials again with the new
        # certificates; the old channels close when zero stops (a move may be using one).
        self._retired.extend(self._datanode_channels.values())
        self._datanode_channels = {}
        log.info("TLS certificates reloaded: new connections use them (open ones keep theirs)",
                 reason=reason, tls_serial=f"{tls.config.serial:x}", tls_not_after=tls.config.not_after,
                 reloads=tls.reloads)
        return True

    async def watch(self, poll: Callable[[], float]) -> None:
        """Reload when the files changed and then stayed the same for one look
        (ServerTls.changed), looking every `poll()` seconds, until cancelled."""
        while True:
            await asyncio.sleep(poll())
            try:
                if self._tls.changed():
                    self.reload("the files in --tls-dir changed")
            except Exception as e:  # the watch must outlive any surprise
                self._log.error("watching --tls-dir failed", error=repr(e))

    async def close(self) -> None:
        """Close the data-node channels, current and retired."""
        for ch in [*self._datanode_channels.values(), *self._retired]:
            await ch.close()
        self._datanode_channels.clear()
        self._retired.clear()
