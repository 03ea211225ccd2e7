"""Which network addresses a tenant may make the platform reach.

A tenant must not be able to point the platform (a webhook sender, the Docker Engine pulling an image)
at the platform's own network: loopback, private, link-local, shared or otherwise non-public addresses.
Used by the webhook channels (apps.alerts.services) and by image references (apps.runtime.engine).
Pure Python: no Django, so drivers can use it too.
"""

from __future__ import annotations

import ipaddress
import socket

# IPv6 addresses that carry an IPv4 address in their last 32 bits and reach it (through a NAT64
# gateway, or a host that still speaks these forms): the IPv4 address is what gets called.
_EMBEDDING_IPV4 = (
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64, well-known prefix (RFC 6052)
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # IPv4-translated (RFC 2765)
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated, RFC 4291)
)
# NAT64 for a local network (RFC 8215): which IPv4 addresses it reaches is the network's own business.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


def address_is_public(address: str) -> bool:
    """Whether an IP address (text; an IPv6 zone is ignored) is a public unicast address, looking
    through IPv6 forms that embed an IPv4 address. Raises ValueError for text that is no address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _LOCAL_NAT64:
            return False
        embedded = ip.ipv4_mapped or ip.sixtofour  # ::ffff:a.b.c.d; 6to4 2002:AABB:CCDD::/48
        if embedded is None and any(ip in network for network in _EMBEDDING_IPV4):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            ip = embedded
    return ip.is_global and not ip.is_multicast


def host_names_private_address(host: str) -> bool:
    """Whether a host (as written in a URL or an image reference) is a non-public IP address or
    localhost. A name that resolves elsewhere is not looked up here (see ``host_resolves_privately``)."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return not address_is_public(host)
    except ValueError:
        return False


def host_resolves_privately(host: str) -> bool:
    """Whether a host is, or resolves to (any of its addresses), a non-public address. A name that
    does not resolve answers False: nothing can be reached through it (the caller fails later)."""
    if host_names_private_address(host):
        return True
    name = host.strip("[]").rstrip(".")
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return False
    return any(not address_is_public(str(info[4][0])) for info in infos)
