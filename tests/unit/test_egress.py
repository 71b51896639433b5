"""Where notifications may go: public addresses only, unless the operator allows others;
the connection is made to the address that was checked, under the name it stands for."""

from __future__ import annotations

import asyncio
import ipaddress

import httpx
import pytest
import redis.asyncio as aioredis

from kubetask.controller import outbox as outbox_module
from kubetask.controller.egress import Pinned, RefusedTarget, refusal, resolve_public
from kubetask.controller.notify import Channel, OutboxEntry
from kubetask.controller.outbox import Outbox


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),  # a cloud's metadata service
        ("fe80::1", "link-local"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("::ffff:10.1.2.3", "private"),  # an IPv4-mapped IPv6 address is its IPv4 address
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of the metadata service
        ("64:ff9b:1::7f00:1", "loopback"),  # a local-use NAT64 prefix
        ("2002:a9fe:a9fe::1", "link-local"),  # 6to4
        ("::7f00:1", "loopback"),  # IPv4-compatible
        ("::ffff:0:a00:5", "private"),  # IPv4-translated
        ("fec0::1", "private"),  # site-local (deprecated, still routed by some)
        ("64:ff9b::808:808", None),  # NAT64 of a public address
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
        ("0.0.0.0", "private"),  # "this network", private to Python
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_only_public_addresses_are_allowed(address: str, reason: str | None) -> None:
    assert refusal(ipaddress.ip_address(address)) == reason


def test_a_literal_internal_address_is_refused_without_a_lookup() -> None:
    with pytest.raises(RefusedTarget, match="link-local"):
        asyncio.run(resolve_public("169.254.169.254", 80))
    with pytest.raises(RefusedTarget, match="loopback"):
        asyncio.run(resolve_public("[::1]", 80))
    assert asyncio.run(resolve_public("8.8.8.8", 443)) == Pinned("8.8.8.8", "8.8.8.8")


def test_a_webhook_is_sent_to_the_checked_address_under_its_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No second lookup between the check and the connection (DNS rebinding): the request
    goes to the pinned address, with the name as Host and as the TLS server name."""

    async def pinned(host: str, port: int) -> Pinned:
        assert (host, port) == ("hooks.example.com", 8443)
        return Pinned("93.184.216.34", host)

    monkeypatch.setattr(outbox_module, "resolve_public", pinned)
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    entry = OutboxEntry(
        id="n1", channel=Channel.WEBHOOK, target="https://hooks.example.com:8443/k?t=1", body="{}"
    )

    async def send() -> None:
        outbox = Outbox(aioredis.Redis())
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
            await outbox._send(http, entry)

    asyncio.run(send())
    (request,) = seen
    assert str(request.url) == "https://93.184.216.34:8443/k?t=1"
    assert request.headers["Host"] == "hooks.example.com:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
