"""Repository URLs: which sources are allowed, how webhook URLs match them, how logs show them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.core.urls import check_source_url, normalize_repo_url, redact_url

KEY = "git.example.com/acme/steps"


# Every way a webhook payload (or a user) names the one repository https://git.example.com/acme/steps.
@pytest.mark.parametrize(
    "url",
    [
        "https://git.example.com/acme/steps",
        "https://git.example.com/acme/steps.git",
        "https://git.example.com/acme/steps/",
        "https://git.example.com/acme/steps.git/",
        "https://git.example.com/acme/steps//",
        "https://git.example.com//acme//steps",
        "https://GIT.Example.COM/acme/steps",
        "HTTPS://git.example.com/acme/steps",
        "https://git.example.com:443/acme/steps",
        "https://bot@git.example.com/acme/steps.git",
        "https://bot:s3cret@git.example.com/acme/steps.git",
        "https://git.example.com/acme/steps?x=1#frag",
        "http://git.example.com/acme/steps",
        "http://git.example.com:80/acme/steps.git",
        "ssh://git@git.example.com/acme/steps.git",
        "ssh://git@git.example.com:22/acme/steps.git",
        "ssh://git@git.example.com:2222/acme/steps.git",
        "ssh://git.example.com/acme/steps",
        "git+ssh://git@git.example.com/acme/steps.git",
        "git://git.example.com/acme/steps.git",
        "git://git.example.com:9418/acme/steps.git",
        "git@git.example.com:acme/steps.git",
        "git@git.example.com:acme/steps",
        "git@git.example.com:/acme/steps.git",
        "git@GIT.EXAMPLE.COM:acme/steps.git/",
        "git.example.com:acme/steps.git",
        "git.example.com/acme/steps",
        "  https://git.example.com/acme/steps.git\n",
    ],
)
def test_all_forms_of_one_repository_share_a_key(url: str) -> None:
    assert normalize_repo_url(url) == KEY


@pytest.mark.parametrize(
    ("url", "key"),
    [
        # Path case is kept: most servers treat paths as case-sensitive.
        ("https://git.example.com/Acme/Steps.git", "git.example.com/Acme/Steps"),
        # A port that is not the scheme's default names a different server.
        ("https://git.example.com:8443/acme/steps.git", "git.example.com:8443/acme/steps"),
        ("http://git.example.com:8080/acme/steps", "git.example.com:8080/acme/steps"),
        ("http://git.example.com:443/acme/steps", "git.example.com:443/acme/steps"),
        ("https://git.example.com:80/acme/steps", "git.example.com:80/acme/steps"),
        # Deeper paths (GitLab subgroups, Bitbucket Server's /scm/, Azure DevOps' /_git/).
        ("https://gitlab.com/group/sub/repo.git", "gitlab.com/group/sub/repo"),
        ("git@gitlab.com:group/sub/repo.git", "gitlab.com/group/sub/repo"),
        ("https://bb.example.com/scm/proj/repo.git", "bb.example.com/scm/proj/repo"),
        ("ssh://git@bb.example.com:7999/proj/repo.git", "bb.example.com/proj/repo"),
        (
            "https://dev.azure.com/org/project/_git/repo",
            "dev.azure.com/org/project/_git/repo",
        ),
        ("https://org@dev.azure.com/org/project/_git/repo", "dev.azure.com/org/project/_git/repo"),
        # IP addresses.
        ("https://127.0.0.1:8443/a/b.git", "127.0.0.1:8443/a/b"),
        ("https://[::1]:8443/a/b.git", "[::1]:8443/a/b"),
        ("https://[::1]/a/b", "[::1]/a/b"),
        ("https://[2001:DB8::1]/a/b", "[2001:db8::1]/a/b"),
        # Only the trailing .git goes; .git inside a name stays.
        ("https://h/a.github.io.git", "h/a.github.io"),
        ("https://h/dotgit.git.d/x", "h/dotgit.git.d/x"),
        # A bare host.
        ("https://h.example", "h.example"),
        ("https://h.example/", "h.example"),
        # Keys themselves (idempotence).
        ("git.example.com:8443/acme/steps", "git.example.com:8443/acme/steps"),
        ("[::1]:8443/a/b", "[::1]:8443/a/b"),
    ],
)
def test_normalize_repo_url(url: str, key: str) -> None:
    assert normalize_repo_url(url) == key


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "https://",
        "https:///acme/steps",
        "file:///srv/git/steps.git",
        "https://exa mple.com/a",
        "https://example.com/a b",
        "https://example.com/a\nb",
        "https://[::1/a",
        "https://host:99999/a",
        "https://host:port/a",
        "https://ho$t/a",
        "/srv/git/steps.git",
        "./steps",
        "host:99999999/a",
        "@",
        "://",
    ],
)
def test_unparseable_urls_normalize_to_empty(url: str) -> None:
    assert normalize_repo_url(url) == ""


def test_different_repositories_have_different_keys() -> None:
    keys = {
        normalize_repo_url(u)
        for u in [
            "https://git.example.com/acme/steps",
            "https://git.example.com/acme/other",
            "https://git.example.com/Acme/steps",
            "https://other.example.com/acme/steps",
            "https://git.example.com:8443/acme/steps",
            "https://git.example.com/acme/steps/sub",
        ]
    }
    assert len(keys) == 6


@given(st.text())
def test_normalize_never_raises_and_is_idempotent(text: str) -> None:
    key = normalize_repo_url(text)
    assert isinstance(key, str)
    assert normalize_repo_url(key) == key


url_parts = st.builds(
    lambda scheme, user, host, port, path: f"{scheme}://{user}{host}{port}/{path}",
    st.sampled_from(["https", "http", "ssh", "git", "HTTPS", "ftp"]),
    st.sampled_from(["", "git@", "u:p@", "%40@"]),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.-]{0,20}", fullmatch=True),
    st.sampled_from(["", ":22", ":80", ":443", ":8443", ":0"]),
    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp")), max_size=30),
)


@given(url_parts)
def test_normalize_url_shaped_text_is_idempotent(url: str) -> None:
    key = normalize_repo_url(url)
    assert normalize_repo_url(key) == key
    assert "@" not in key.split("/", 1)[0]


@pytest.mark.parametrize(
    "url",
    [
        "https://git.example.com/acme/steps.git",
        "https://git.example.com:8443/acme/steps.git",
        "https://GIT.example.com/acme/steps",
        "https://127.0.0.1:8443/a.git",
        "https://[::1]:8443/a.git",
        "HTTPS://git.example.com/acme/steps.git",
    ],
)
def test_https_sources_are_accepted(url: str) -> None:
    check_source_url(url)


@pytest.mark.parametrize(
    ("url", "seen"),
    [
        ("http://git.example.com/acme/steps.git", "scheme 'http'"),
        ("git://git.example.com/acme/steps.git", "scheme 'git'"),
        ("ssh://git@git.example.com/acme/steps.git", "scheme 'ssh'"),
        ("git+ssh://git@git.example.com/acme/steps.git", "scheme 'git+ssh'"),
        ("file:///srv/git/steps.git", "scheme 'file'"),
        ("ftp://git.example.com/steps", "scheme 'ftp'"),
        ("git@git.example.com:acme/steps.git", "scp-like"),
        ("git.example.com:acme/steps.git", "scp-like"),
        ("/srv/git/steps.git", "no scheme"),
        ("git.example.com/acme/steps", "no scheme"),
        ("", "no scheme"),
    ],
)
def test_other_schemes_are_refused_naming_the_scheme(url: str, seen: str) -> None:
    with pytest.raises(ValueError, match="https is required") as info:
        check_source_url(url)
    assert seen in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://bot:hunter2@git.example.com/acme/steps.git",
        "https://hunter2@git.example.com/acme/steps.git",
        "https://bot:hunter2@@git.example.com/acme/steps.git",
        "https://:hunter2@git.example.com/acme/steps.git",
        "https://bot:hunter2#x@git.example.com/acme/steps.git",
        "https://bot:hunter2?x@git.example.com/acme/steps.git",
    ],
)
def test_embedded_credentials_are_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ValueError, match="password_env") as info:
        check_source_url(url)
    assert "hunter2" not in str(info.value)
    assert "git.example.com/acme/steps.git" in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://bot:hunter2@git.example.com/acme/steps.git",
        "ssh://bot:hunter2@git.example.com/acme/steps.git",
        "http://bot:hunter2@git.example.com/a b",
    ],
)
def test_refusals_never_echo_a_password(url: str) -> None:
    with pytest.raises(ValueError) as info:
        check_source_url(url)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https:///acme/steps.git", "no host"),
        ("https://", "no host"),
        ("https://:443/acme", "no host"),
        ("https://git.example.com/acme steps", "whitespace or control"),
        ("https://git.example.com/acme\tsteps", "whitespace or control"),
        ("https://git.example.com/acme/steps\n", "whitespace or control"),
        ("https://git.example.com/acme\x00", "whitespace or control"),
        (" https://git.example.com/acme", "whitespace or control"),
        ("https://git.example.com:99999/acme", "not a valid URL"),
        ("https://git.example.com:abc/acme", "not a valid URL"),
        ("https://git.example.com:0/acme", "port 0"),
        ("https://[::1/acme", "not a valid URL"),
    ],
)
def test_malformed_https_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_source_url(url)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://bot:hunter2@host/a.git", "https://host/a.git"),
        ("https://hunter2@host/a.git", "https://host/a.git"),
        ("https://a:b@c:d@host:8443/a.git", "https://host:8443/a.git"),
        ("ssh://git@host:2222/a.git", "ssh://host:2222/a.git"),
        ("git@host:a.git", "host:a.git"),
        ("https://host/a@b.git", "https://host/a@b.git"),
        ("https://host/a.git?u=x@y", "https://host/a.git?u=x@y"),
        ("https://u:p#ss@host/a.git", "https://host/a.git"),
        ("https://host/a.git", "https://host/a.git"),
        ("not a url", "not a url"),
        ("", ""),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@given(st.text(), st.text(min_size=1).filter(lambda s: "@" not in s and "/" not in s))
def test_redact_url_drops_any_user_info(rest: str, secret: str) -> None:
    redacted = redact_url(f"https://user:{secret}@host/{rest}")
    assert redacted == f"https://host/{rest}"
