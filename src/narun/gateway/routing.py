"""Pure HTTP route matching: (method, path) to the configured route, or why not.

A :class:`Router` is built once from the HTTP routes of a
:class:`~narun.config.gateway.GatewayConfig` and answers :meth:`Router.match` on every request.
It does no I/O and no logging.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

from narun.config.gateway import HTTPRoute
from narun.errors import ConfigError

__all__ = [
    "NOT_FOUND",
    "Match",
    "MatchResult",
    "MethodNotAllowed",
    "NotFound",
    "Redirect",
    "Router",
]


@dataclass(frozen=True, slots=True)
class Match:
    """The request goes to ``route``."""

    route: HTTPRoute


@dataclass(frozen=True, slots=True)
class MethodNotAllowed:
    """The path is routed, but not for this method: answer 405 with ``Allow``."""

    allow: tuple[str, ...]
    """Methods the deciding path pattern accepts, sorted."""
    pattern: str
    """The deciding path pattern (a bounded metrics label, unlike the request path)."""


@dataclass(frozen=True, slots=True)
class Redirect:
    """The path lacks the trailing slash of a prefix route: redirect (301/308) there.

    ``location_path`` is the path only; the caller appends the query string.
    """

    location_path: str


@dataclass(frozen=True, slots=True)
class NotFound:
    """No route matches the path: answer 404. Use the :data:`NOT_FOUND` instance."""


NOT_FOUND: Final = NotFound()

MatchResult: TypeAlias = Match | MethodNotAllowed | Redirect | NotFound


@dataclass(frozen=True, slots=True)
class _Pattern:
    """Everything configured for one path pattern, answers prebuilt."""

    by_method: dict[str, Match]
    not_allowed: MethodNotAllowed


class Router:
    """Match requests against HTTP routes.

    Rules, in order:

    1. An exact pattern (path not ending in ``/``) equal to the request path decides.
    2. Else, if ``path + "/"`` is a prefix pattern, the answer is :class:`Redirect` to it
       (whatever the method; the redirect target then decides).
    3. Else the longest prefix pattern (ending in ``/``) that the path starts with decides;
       ``"/"`` matches every path.
    4. Else :data:`NOT_FOUND`.

    The pattern that decides is the only one consulted: if it has no route for the
    method, the answer is :class:`MethodNotAllowed` listing its methods, even if a
    shorter prefix would accept the method. One path may send different methods to
    different services. Methods compare case-insensitively (as in Go narun); paths
    compare literally, so pass the percent-decoded, normalized path (ASGI
    ``scope["path"]``); nothing is decoded or cleaned here.
    """

    __slots__ = ("_exact", "_max_prefix_len", "_prefix", "_redirects")

    def __init__(self, routes: Sequence[HTTPRoute]) -> None:
        """Index ``routes``. Raises :class:`ConfigError` on a duplicate (path, method)."""
        grouped: dict[str, dict[str, Match]] = {}
        for route in routes:
            by_method = grouped.setdefault(route.path, {})
            for method in route.methods:
                if method in by_method:
                    raise ConfigError(f"duplicate HTTP route: {method} {route.path!r}")
                by_method[method] = Match(route)
        patterns = {
            path: _Pattern(by_method, MethodNotAllowed(tuple(sorted(by_method)), path))
            for path, by_method in grouped.items()
        }
        self._exact = {p: v for p, v in patterns.items() if not p.endswith("/")}
        self._prefix = {p: v for p, v in patterns.items() if p.endswith("/")}
        self._redirects = {p[:-1]: Redirect(p) for p in self._prefix if p != "/"}
        self._max_prefix_len = max(map(len, self._prefix), default=0)

    def match(self, method: str, path: str) -> MatchResult:
        """Decide where a request with ``method`` and ``path`` goes (see class doc)."""
        pattern = self._exact.get(path)
        if pattern is None:
            redirect = self._redirects.get(path)
            if redirect is not None:
                return redirect
            pattern = self._longest_prefix(path)
            if pattern is None:
                return NOT_FOUND
        found = pattern.by_method.get(method)
        if found is None:
            found = pattern.by_method.get(method.upper())
            if found is None:
                return pattern.not_allowed
        return found

    def _longest_prefix(self, path: str) -> _Pattern | None:
        # Walk the path's "/" boundaries from the right: each candidate prefix is one
        # dict lookup, so the cost depends on the path's depth, not the route count.
        prefixes = self._prefix
        end = min(len(path), self._max_prefix_len)
        while (i := path.rfind("/", 0, end)) >= 0:
            pattern = prefixes.get(path[: i + 1])
            if pattern is not None:
                return pattern
            end = i
        return None
