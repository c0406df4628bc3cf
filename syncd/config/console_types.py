"""The types of the `console` section: sessions, OpenID Connect sign-in and the roles that map a
provider's groups to what their members may do. Frozen, no I/O (`types` re-exports
ConsoleConfig; `console_section` parses them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from syncd.core.access import ALL, Access, Grant

if TYPE_CHECKING:  # only named in annotations: types imports this module
    from syncd.config.types import Secret

# The name claims tried in turn when `console.oidc.name_claim` is not set (`sub` last).
NAME_CLAIMS: tuple[str, ...] = ("preferred_username", "email")


@dataclass(frozen=True)
class OidcConfig:
    """`console.oidc`: the identity provider the console signs people in with (authorization
    code flow with PKCE; see syncd.http.console.oidc)."""

    issuer: str  # exactly as the provider's ID tokens say it (`iss`)
    client_id: str
    redirect_url: str  # the console's /ui/oidc/callback as browsers reach it
    client_secret: Secret | None = None  # None: a public client (PKCE alone)
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    groups_claim: str = "groups"
    name_claim: str | None = None  # None: NAME_CLAIMS in turn, else `sub`


@dataclass(frozen=True)
class RoleConfig:
    """An entry of `console.roles`: what members of a provider's group may do, and where."""

    group: str
    scopes: frozenset[str]  # a subset of SCOPES
    workspaces: tuple[str, ...] = ALL

    @property
    def grant(self) -> Grant:
        return Grant(self.scopes, self.workspaces)


@dataclass(frozen=True)
class ConsoleConfig:
    # Signs the console's session cookies. None: a key made at each start, so a restart signs
    # everyone out; set one to keep sessions across restarts (and across several processes).
    session_key: Secret | None = None
    session_lifetime: float = 8 * 3600.0
    oidc: OidcConfig | None = None
    roles: tuple[RoleConfig, ...] = ()
    token_sign_in: bool = True  # signing in with an API token (turned off: OpenID Connect only)

    def access_of(self, groups: tuple[str, ...] | frozenset[str]) -> Access:
        """What a console user in these groups may do, by the roles as configured now: one
        grant per role whose group they are in (none: nothing at all)."""
        held = set(groups)
        return Access(tuple(role.grant for role in self.roles if role.group in held))
