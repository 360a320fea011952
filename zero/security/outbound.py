"""The credentials of the gRPC channels `zero run` opens (to peer zeros, to the leader
for forwarded calls, the join call, data nodes during moves), and what a reload of the
served certificates changes for them (reload.py says what it changes on the ports).

Channels created after a reload present the new node.crt and trust the new ca.crt. gRPC
cannot change a channel's credentials (a channel keeps them, also when it reconnects),
so every channel cache is replaced instead: the peer transport dials a new channel at
its next connection attempt (it follows `credentials`), and the forwarder's, the
liveness mirror's, the Dgraph verbs' and the data-node dials are renewed (`on_reload`).
Calls already open finish on their old channels, which close when zero stops; a TLS
connection that stays up is not checked again, so nothing breaks when the old
certificate expires under it, and the next reconnect presents the new one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

import grpc

from zero.log import Logger
from zero.security.certs import TlsError
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
        self._users: list[CredentialsUser] = []
        # Called after a reload: caches of channels to other zeros dial anew (the app
        # registers the forwarder's, the liveness mirror's and the Dgraph verbs').
        self.on_reload: list[Callable[[], None]] = []
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
        for user in self._users:
            user.credentials = creds  # e.g. peer channels created from now on
        for renew in self.on_reload:
            renew()
        # Data-node dials are replaced: the next move dials again with the new
        # certificates; the old channels close when zero stops (a move may be using one).
        self._retired.extend(self._datanode_channels.values())
        self._datanode_channels = {}
        log.info("TLS certificates reloaded: new connections and every reconnect use them",
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
