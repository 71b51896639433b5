"""Where notifications may be sent. A job's webhook is the user's to choose, and the
controller runs inside the cluster: without a rule, `http://169.254.169.254/...` (a cloud's
metadata service) or `http://redis:6379` would be reached from inside. So a target must
resolve to public addresses only, checked on the address actually connected to (resolved at
send time, and the connection pinned to it), unless the operator allows private targets
(`KUBETASK_WEBHOOK_ALLOW_PRIVATE`)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedTarget(Exception):
    """The target resolves to an address notifications may not reach; retrying is useless."""


def refusal(address: IPAddress) -> str | None:
    """Why an address may not be reached (None: it is a public one)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "non-public"
    return None


@dataclass(frozen=True)
class Pinned:
    """Where to connect (an address that was checked) and the name it stands for."""

    address: str
    host: str


async def resolve_public(host: str, port: int) -> Pinned:
    """Resolve `host`; every address it has must be public (RefusedTarget otherwise, with
    the same words whatever the address was, beyond its kind)."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:  # a name that does not resolve (now) raises OSError: tried again later
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for address in addresses:
        reason = refusal(address)
        if reason is not None:
            raise RefusedTarget(
                f"{host} resolves to a {reason} address; notifications go to public "
                "addresses only (KUBETASK_WEBHOOK_ALLOW_PRIVATE=true allows others)"
            )
    return Pinned(str(addresses[0]), host)
