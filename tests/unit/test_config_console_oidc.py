"""`console.oidc`, `console.roles` and `console.token_sign_in`: defaults, every refusal naming
its key (never the client secret), role patterns that match nothing warned about; and what a
session keeps of a user's groups, within a cookie's room."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from syncd.config import Config, load_config
from syncd.config.console_types import OidcConfig
from syncd.core.access import Grant
from syncd.core.errors import ConfigError
from syncd.http.console.sessions import MAX_GROUP_CHARS, Sessions, keep_groups

SECRET = "oidc-client-secret-9f8e7d"
ENV = {"OIDC_SECRET": SECRET}
WORKSPACES = """\
workspaces:
  - {id: dev, name: dev, tags: [dev], source: {url: "https://git.example.com/a.git"}}
  - {id: prod, name: prod, source: {url: "https://git.example.com/a.git"}}
"""
OIDC = (
    "{issuer: https://idp.example.com/realms/x, client_id: syncd, client_secret_env: OIDC_SECRET}"
)


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "syncd.yaml"
    path.write_text(WORKSPACES + textwrap.dedent(text))
    return load_config(path, ENV)


def refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, text)
    assert SECRET not in str(e.value)
    return str(e.value)


def test_defaults_and_roles(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        f"""\
        server: {{public_url: "https://syncd.example.com/"}}
        console:
          oidc: {OIDC}
          roles:
            - {{group: ops, scopes: [read, sync]}}
            - {{group: developers, scopes: [read], workspaces: ["tag:dev", "nothing-*"]}}
        """,
    )
    console = config.console
    oidc = console.oidc
    assert oidc is not None
    assert oidc.redirect_url == "https://syncd.example.com/ui/oidc/callback"
    assert oidc.scopes == ("openid", "profile", "email") and oidc.groups_claim == "groups"
    assert oidc.name_claim is None and console.token_sign_in is True
    assert oidc.client_secret in config.secrets() and SECRET not in repr(config)
    # The grants of the roles whose group the user is in; no group, nothing.
    assert console.access_of(("developers", "x")).grants == (
        Grant(frozenset({"read"}), ("tag:dev", "nothing-*")),
    )
    assert console.access_of(()).grants == ()
    warnings = config.warnings
    assert any(
        'console.roles[1] (group "developers").workspaces: "nothing-*" matches' in w
        for w in warnings
    )


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            "console: {oidc: {issuer: http://idp.example.com, client_id: s, redirect_url: https://s/cb}}",
            "console.oidc.issuer: must be https (plain http only for this host",
        ),
        (
            "console: {oidc: {issuer: https://idp.example.com, client_id: s}}",
            "console.oidc.redirect_url: is required when server.public_url is not set",
        ),
        (
            f"console: {{oidc: {OIDC}, roles: [{{group: ops, scopes: [read, admin]}}]}}",
            'console.roles[0] (group "ops").scopes[1]: unknown scope "admin"',
        ),
        (
            "console: {roles: [{group: ops, scopes: [read]}]}",
            "console.roles: roles map OpenID Connect groups: they need console.oidc",
        ),
        (
            "console: {token_sign_in: false}",
            "console.token_sign_in: false leaves no way to sign in",
        ),
        (
            "console: {oidc: {issuer: https://i.example.com, client_id: s, scopes: [profile]}}",
            "console.oidc.scopes: must hold openid",
        ),
    ],
)
def test_refusals_name_the_key(tmp_path: Path, text: str, said: str) -> None:
    server = (
        "server: {public_url: https://syncd.example.com}\n" if "redirect_url" not in said else ""
    )
    assert said in refused(tmp_path, server + text)


def test_loopback_issuers_may_be_plain_http(tmp_path: Path) -> None:
    for host in ("localhost:5556", "127.0.0.1:8080", "[::1]:9000"):
        back = "http://127.0.0.1/ui/oidc/callback"
        text = f"console: {{oidc: {{issuer: 'http://{host}', client_id: s, redirect_url: {back}}}}}"
        oidc = load(tmp_path, text).console.oidc
        assert oidc is not None and oidc.issuer == f"http://{host}"


def test_a_session_keeps_the_groups_roles_name_first_within_a_cookies_room() -> None:
    many = [f"group-{i:04d}-{'x' * 40}" for i in range(200)]
    kept = keep_groups([*many, "ops", "", "y" * 300], {"ops"})
    assert kept[0] == "ops" and "" not in kept and "y" * 300 not in kept
    assert sum(map(len, kept)) <= MAX_GROUP_CHARS
    signer = Sessions(b"k" * 32, 3600)
    provider = OidcConfig("https://idp.example.com", "syncd", "https://s/ui/oidc/callback")
    session = signer.new_oidc(1e9, provider, "a" * 255, "Ada", kept)
    cookie = signer.encode(session)
    assert len(cookie) < 4096 and signer.decode(cookie, 1e9) == session
    assert signer.made_by(session, provider)
    moved = OidcConfig("https://other.example.com", "syncd", "https://s/ui/oidc/callback")
    assert not signer.made_by(session, moved)  # another provider: the session has ended
