"""The SSRF guard: which IP addresses the crawler may connect to, enforced where it connects.

Only public unicast addresses are allowed: loopback, private, link-local (cloud metadata at
169.254.169.254), CGNAT (100.64.0.0/10, Alibaba's metadata at 100.100.100.200), unspecified,
multicast and reserved ranges are refused, and an IPv6 address that carries an IPv4 address
(IPv4-mapped, IPv4-compatible, 6to4, Teredo, NAT64) is judged by that IPv4 address too. Networks
in the allowlist (`crawl.allowedNetworks`) are allowed although they are not public.

`GuardedResolver` is the resolver of the crawler's HTTP connector: it resolves a host name,
refuses it when any of its addresses is refused, and hands the connector only checked
addresses, so the address that was checked is the address connected to (no DNS rebinding in
between). Hosts written as IP literals never reach a resolver; `AddressPolicy.refusal` checks
them before a request is made. Every redirect is a new request, so it is checked again.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


class BlockedAddress(Exception):
    """A host resolved to an address the crawler must not connect to."""

    def __init__(self, host: str, address: str, why: str) -> None:
        super().__init__(f"{host} resolves to {address}, {why}")
        self.host = host
        self.address = address


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, if it carries one."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _why_not_public(address: IPAddress) -> str | None:
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (cloud metadata lives there)"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_reserved or not address.is_global:
        return "not a public address (private, CGNAT or reserved)"
    return None


class AddressPolicy:
    """Which addresses may be connected to: public ones, and those in the allowlist."""

    def __init__(self, allowed_networks: Sequence[str] = ()) -> None:
        self.allowed: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(network, strict=False) for network in allowed_networks
        )

    def _allowlisted(self, address: IPAddress) -> bool:
        return any(address in network for network in self.allowed)

    def refusal(self, address: str) -> str | None:
        """Why the address is refused, or None when the crawler may connect to it."""
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
        if self._allowlisted(parsed):
            return None
        carried = embedded_ipv4(parsed) if isinstance(parsed, ipaddress.IPv6Address) else None
        if carried is not None:
            if self._allowlisted(carried):
                return None
            why = _why_not_public(carried)
            if why is not None:
                return f"it carries {carried}, {why}"
        return _why_not_public(parsed)


def literal_address(host: str) -> str | None:
    """The host as an IP address when it is written as one (brackets of IPv6 removed)."""
    candidate = host.removeprefix("[").removesuffix("]")
    try:
        return str(ipaddress.ip_address(candidate.split("%", 1)[0]))
    except ValueError:
        return None


class GuardedResolver(AbstractResolver):
    """Resolves host names and refuses those with any address the policy refuses."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._resolver = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        for result in results:
            why = self._policy.refusal(result["host"])
            if why is not None:
                raise BlockedAddress(host, result["host"], why)
        return results

    async def close(self) -> None:
        await self._resolver.close()
