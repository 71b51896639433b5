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


# IPv6 forms that carry an IPv4 address a gateway or the host reaches: NAT64 (RFC 6052,
# RFC 8215), IPv4-compatible (deprecated) and IPv4-translated (SIIT) addresses; each is
# judged by the IPv4 address it carries (6to4's and mapped ones: by `sixtofour`, `ipv4_mapped`)
_CARRY_IPV4 = tuple(
    ipaddress.ip_network(net)
    for net in ("64:ff9b::/96", "64:ff9b:1::/48", "::/96", "::ffff:0:0:0/96")
)


def carried_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64, ...), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in net for net in _CARRY_IPV4):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: IPAddress) -> str | None:
    """Why an address may not be reached (None: it is a public one). An IPv6 address that
    carries an IPv4 one is judged by that one too."""
    if (why := _own_refusal(address)) is not None:
        return why
    if isinstance(address, ipaddress.IPv6Address):
        if address.is_site_local:
            return "private"
        carried = carried_ipv4(address)
        if carried is not None:
            return _own_refusal(carried)
    return None


def _own_refusal(address: IPAddress) -> str | None:
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
