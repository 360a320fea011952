"""Addresses and listening sockets of a zero process: HOST:PORT split, ports bound
before they are served (so a busy port is found before a zero joins a cluster), and the
check that finds a busy port before gRPC would log its own error line."""

from __future__ import annotations

import errno
import os
import socket

__all__ = ["split_addr", "bind_tcp", "listen_refusal"]


def split_addr(addr: str) -> tuple[str, int]:
    """(host, port) of HOST:PORT; an IPv6 host loses its brackets."""
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def bind_tcp(addr: str) -> list[socket.socket]:
    """Listening sockets for HOST:PORT, one per address HOST resolves to (an empty host
    or 0.0.0.0 is every IPv4 interface), as asyncio's create_server binds them; port 0
    picks one free port for all. No SO_REUSEPORT: a second zero must not share it."""
    host, port = split_addr(addr)
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    socks: list[socket.socket] = []
    try:
        for family, type_, proto, _, sockaddr in dict.fromkeys(infos):
            sock = socket.socket(family, type_, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(socks) > 1:
                sockaddr = (sockaddr[0], socks[0].getsockname()[1], *sockaddr[2:])
            sock.bind(sockaddr)
            sock.listen(128)
            sock.setblocking(False)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def listen_refusal(addr: str) -> str | None:
    """Why listening on HOST:PORT is refused for good ("Address already in use",
    "Permission denied"), found with a plain bind; None for port 0, a free port, or any
    other error (left for the server that binds it to judge)."""
    if split_addr(addr)[1] == 0:
        return None
    try:
        for sock in bind_tcp(addr):
            sock.close()
    except OSError as e:
        if e.errno in (errno.EADDRINUSE, errno.EACCES):
            return e.strerror or os.strerror(e.errno)
    return None
