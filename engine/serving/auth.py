"""Who may call what: bearer tokens for OfferService and AdminService, throttled per peer.

Tokens travel as ``authorization: Bearer <token>`` metadata. The server keeps SHA-256 digests of
its tokens and compares the digest of the given one with every one of them in constant time, so
neither the timing nor the length of the answer tells a guess that came close. Mutual TLS
(``--tls-client-ca``) is checked by the transport before any call reaches these interceptors.

A peer (a client address; an IPv6 /64) whose tokens fail ``limit`` times is refused for a window
that doubles with every further failure, up to ``max_seconds``, with RESOURCE_EXHAUSTED and no
token check at all, so guessing gets no answer while it lasts. The refusal costs nothing: the
interceptors run on the event loop and never sleep. The table of peers is bounded (least
recently failed peers are dropped first) and a peer's failures are forgotten after
``forget_seconds`` without one. Calls without a token, and valid tokens used for another
campaign, are refused without counting as guesses.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.errors import AuthenticationError, PermissionDeniedError, ResourceExhaustedError
from engine.serving.interceptors import Context, UnaryInterceptor, metadata_value

ADMIN_SERVICE_PREFIX = "/nbo.v1.AdminService/"
OFFER_SERVICE_PREFIX = "/nbo.v1.OfferService/"
EVERY_CAMPAIGN = "*"
_BEARER = "Bearer "


def peer_key(peer: str) -> str:
    """The address a peer's failures are counted under: its IP (an IPv6 address's /64).

    Examples
    --------
    >>> peer_key("ipv4:127.0.0.1:50512"), peer_key("ipv6:[2001:db8::7]:443")
    ('127.0.0.1', '2001:db8::/64')
    >>> peer_key("unix:/tmp/nbo.sock")
    'unix:/tmp/nbo.sock'
    """
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return peer
    host = rest.rsplit(":", 1)[0].strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return peer
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


@dataclass(eq=False)
class PeerThrottle:
    """Failed token attempts per peer, and the refusal window they earn.

    Examples
    --------
    >>> now = [0.0]
    >>> t = PeerThrottle(limit=2, base_seconds=1.0, clock=lambda: now[0])
    >>> t.failed("a"); t.retry_after("a")
    0.0
    >>> t.failed("a"); t.retry_after("a"), t.retry_after("b")
    (1.0, 0.0)
    >>> now[0] = 1.5; t.failed("a"); t.retry_after("a")
    2.0
    """

    limit: int = 10
    base_seconds: float = 1.0
    max_seconds: float = 300.0
    forget_seconds: float = 600.0
    max_peers: int = 10_000
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    # peer -> [failures, refused until, last failure]; oldest failure first
    _peers: OrderedDict[str, list[float]] = field(
        default_factory=OrderedDict, init=False, repr=False
    )

    def retry_after(self, peer: str) -> float:
        """Seconds until ``peer`` may try a token again (0 when it may now)."""
        state = self._peers.get(peer)
        if state is None:
            return 0.0
        now = self.clock()
        if now - state[2] > self.forget_seconds:
            del self._peers[peer]
            return 0.0
        return max(0.0, state[1] - now)

    def failed(self, peer: str) -> None:
        """Count one failed attempt of ``peer``."""
        now = self.clock()
        state = self._peers.pop(peer, None)
        if state is None or now - state[2] > self.forget_seconds:
            state = [0.0, 0.0, now]
        state[0] += 1
        state[2] = now
        if state[0] >= self.limit:
            window = self.base_seconds * 2.0 ** min(state[0] - self.limit, 32)
            state[1] = now + min(window, self.max_seconds)
        self._peers[peer] = state
        while len(self._peers) > self.max_peers:
            self._peers.popitem(last=False)

    def __len__(self) -> int:
        return len(self._peers)


class TokenSet:
    """Tokens and the campaign each is valid for (``"*"``: every campaign).

    Examples
    --------
    >>> tokens = TokenSet([("*", "all-k3y"), ("renewal", "r-k3y")])
    >>> tokens.scopes_of("r-k3y"), tokens.scopes_of("all-k3y"), tokens.scopes_of("nope")
    ({'renewal'}, {'*'}, set())
    """

    def __init__(self, entries: Iterable[tuple[str, str]]) -> None:
        self._digests = [(scope, _digest(token)) for scope, token in entries]

    def scopes_of(self, token: str) -> set[str]:
        """The campaigns ``token`` is valid for; empty when it matches none."""
        given = _digest(token)
        scopes = set()
        for scope, digest in self._digests:  # every one compared: no early exit
            if hmac.compare_digest(given, digest):
                scopes.add(scope)
        return scopes

    def __len__(self) -> int:
        return len(self._digests)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class _BearerInterceptor(UnaryInterceptor):
    """Check the bearer token of the calls of one service; subclasses say what a token grants."""

    prefix = ""
    who = ""

    def __init__(self, tokens: TokenSet, throttle: PeerThrottle) -> None:
        super().__init__()
        self.tokens = tokens
        self.throttle = throttle

    def applies_to(self, method: str) -> bool:
        return method.startswith(self.prefix)

    def before(self, request: Any, context: Context) -> None:
        given = metadata_value(context, "authorization")
        if not given:
            raise AuthenticationError(
                "authorization: expected metadata 'authorization: Bearer <token>', got none"
            )
        peer = peer_key(context.peer())
        wait = self.throttle.retry_after(peer)
        if wait > 0:
            raise ResourceExhaustedError(
                f"authorization: too many failed tokens from {peer}; retry in {math.ceil(wait)} s"
            )
        token = given.removeprefix(_BEARER) if given.startswith(_BEARER) else None
        scopes = self.tokens.scopes_of(token) if token is not None else set()
        if not scopes:
            self.throttle.failed(peer)
            raise PermissionDeniedError(
                f"authorization: expected {self.who} bearer token, got one that does not match"
            )
        self.granted(scopes, request)

    def granted(self, scopes: set[str], request: Any) -> None:
        """Raise when a valid token does not cover ``request``."""


class AdminAuthInterceptor(_BearerInterceptor):
    """Require the admin bearer token on AdminService calls."""

    prefix = ADMIN_SERVICE_PREFIX
    who = "the admin"

    def __init__(self, token: str, throttle: PeerThrottle) -> None:
        super().__init__(TokenSet([(EVERY_CAMPAIGN, token)]), throttle)


class ClientAuthInterceptor(_BearerInterceptor):
    """Require a client bearer token valid for the request's campaign on OfferService calls.

    ``only_campaign`` is the name an empty ``campaign`` field stands for (the server hosts one
    campaign), or None when it hosts several.
    """

    prefix = OFFER_SERVICE_PREFIX
    who = "a client"

    def __init__(
        self, tokens: TokenSet, throttle: PeerThrottle, only_campaign: Callable[[], str | None]
    ) -> None:
        super().__init__(tokens, throttle)
        self._only_campaign = only_campaign

    def granted(self, scopes: set[str], request: Any) -> None:
        if EVERY_CAMPAIGN in scopes:
            return
        campaign = getattr(request, "campaign", "") or self._only_campaign() or ""
        if campaign not in scopes:
            raise PermissionDeniedError(
                f"authorization: expected a token valid for campaign {campaign!r}, got one "
                "valid for other campaigns"
            )


class AdminDisabledInterceptor(UnaryInterceptor):
    """Refuse every AdminService call: the server has no admin token and is not insecure-admin."""

    def applies_to(self, method: str) -> bool:
        return method.startswith(ADMIN_SERVICE_PREFIX)

    def before(self, request: Any, context: Context) -> None:
        raise PermissionDeniedError(
            "AdminService: disabled on this server, which has no admin token; start it with "
            "--admin-token (or NBO_ADMIN_TOKEN), or --insecure-admin for development only"
        )
