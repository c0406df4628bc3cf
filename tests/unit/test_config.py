"""Configuration: every rule, every message naming file, key and value, and no secret leaking."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.config import (
    Config,
    DeleteLimit,
    GitConfig,
    NotificationsConfig,
    Secret,
    ServerConfig,
    SmtpConfig,
    SourceConfig,
    StoreConfig,
    WebhookConfig,
    default_config_path,
    load_config,
    parse_duration,
)
from syncd.core.errors import ConfigError, NotFound
from syncd.core.model import WEBHOOK_PROVIDERS, Mode

# Secret values: no message and no repr may ever contain them.
ENV = {
    "GIT_TOKEN": "git-secret-1f3a",
    "SYNCD_TOKEN": "api-secret-77c2-0123456789",
    "GITHUB_WEBHOOK_SECRET": "gh-secret-0b9e",
    "GITLAB_WEBHOOK_TOKEN": "gl-secret-c4d1",
    "SMTP_PASSWORD": "smtp-secret-5e60",
}
SECRET_VALUES = tuple(ENV.values())

CONTRACT_EXAMPLE = """\
server: {listen: "127.0.0.1:8080", max_body_bytes: 1048576}
state_dir: /var/lib/syncd              # git mirrors and the embedded database
store: {url: "sqlite:///var/lib/syncd/syncd.db"}   # the embedded default
include: workspaces.d/*.yaml            # optional: more workspaces, one or more per file
tokens:                                 # API bearer tokens
  - {name: ci, token_env: SYNCD_TOKEN, scopes: [read, sync]}   # scopes: read, sync, write, export
webhooks:                               # per provider, several secrets allowed (rotation)
  github: {secrets_env: [GITHUB_WEBHOOK_SECRET]}
  gitlab: {secrets_env: [GITLAB_WEBHOOK_TOKEN]}
notifications:
  interval: 15m                         # one digest e-mail per interval, none when nothing failed
  smtp: {host: localhost, port: 25, tls: none, from: syncd@example.com}  # tls: none|starttls|tls
defaults: {mode: manual, branch: main, path: export/steps, poll_interval: 60s}
workspaces:
  - id: "12345"
    name: prod
    tags: [prod]
    mode: automatic                     # automatic | manual
    source:
      url: https://git.example.com/acme/steps.git     # https only: git://, ssh and http are refused
      branch: main
      path: export/steps
      username: bot
      password_env: GIT_TOKEN           # or password_file
      ca_file: CA_FILE        # optional extra trust
    poll_interval: 30s                  # 0 = webhooks only
    allow_empty: false                  # refuse a sync that would delete every step
    notify: [ops@example.com]
"""

WS = """\
workspaces:
  - id: "{id}"
    name: {name}
    source: {{url: "https://git.example.com/acme/steps.git"}}
"""


def write(directory: Path, text: str, name: str = "syncd.yaml") -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    return load_config(write(tmp_path, text), ENV if env is None else env)


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, ENV if env is None else env)
    found: list[str] = info.value.problems  # type: ignore[attr-defined]
    assert str(info.value) == "\n".join(found)
    assert found
    for line in found:
        assert line.startswith(str(tmp_path)) or line.startswith("... and "), line
        for secret in SECRET_VALUES:
            assert secret not in line
    return found


def one_problem(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    found = problems(tmp_path, text, env)
    assert len(found) == 1, found
    return found[0]


def workspace(body: str, **fields: str) -> str:
    """One workspace with a valid https source, plus `body` (indented YAML) inside it."""
    fields.setdefault("id", "w1")
    text = WS.format(id=fields["id"], name=fields.get("name", "prod"))
    return text + textwrap.indent(textwrap.dedent(body), "    ")


# --- The contract's example and the defaults ---------------------------------------------------


def test_contract_example_loads(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    config = load(tmp_path, CONTRACT_EXAMPLE.replace("CA_FILE", str(ca)))

    assert config.path == tmp_path / "syncd.yaml"
    assert config.files == (tmp_path / "syncd.yaml",)
    assert config.server == ServerConfig("127.0.0.1", 8080, 1048576)
    assert config.state_dir == Path("/var/lib/syncd")
    assert config.store.sqlite_path == Path("/var/lib/syncd/syncd.db")
    [token] = config.tokens
    assert (token.name, token.token.reveal(), token.scopes) == (
        "ci",
        ENV["SYNCD_TOKEN"],
        frozenset({"read", "sync"}),
    )
    assert set(config.webhooks) == {"github", "gitlab"}
    assert [s.reveal() for s in config.webhooks["github"].secrets] == [ENV["GITHUB_WEBHOOK_SECRET"]]
    assert config.webhooks["gitlab"].signing_secrets == ()
    assert config.notifications.interval == 900
    assert config.notifications.smtp == SmtpConfig(
        "localhost", 25, "none", "syncd@example.com", None, None, 30.0
    )
    assert config.git == GitConfig()
    [ws] = config.workspaces
    assert (ws.id, ws.name, ws.tags, ws.mode) == ("12345", "prod", ("prod",), Mode.AUTOMATIC)
    assert (ws.poll_interval, ws.allow_empty, ws.notify) == (30.0, False, ("ops@example.com",))
    assert ws.file == tmp_path / "syncd.yaml"
    assert ws.source.url == "https://git.example.com/acme/steps.git"
    assert (ws.source.branch, ws.source.path, ws.source.username) == ("main", "export/steps", "bot")
    assert ws.source.password is not None
    assert ws.source.password.reveal() == ENV["GIT_TOKEN"]
    assert ws.source.ca_file == ca
    assert config.workspace("12345") is ws


def test_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, WS.format(id="w1", name="prod"), env={})
    assert config.server == ServerConfig(host="127.0.0.1", port=8080, max_body_bytes=1048576)
    assert config.state_dir == Path("/var/lib/syncd")
    assert config.store.url == "sqlite:////var/lib/syncd/syncd.db"
    assert config.store.sqlite_path == Path("/var/lib/syncd/syncd.db")
    assert config.tokens == ()
    assert dict(config.webhooks) == {}
    assert config.notifications == NotificationsConfig(interval=900.0, smtp=None)
    assert config.git == GitConfig(
        timeout=30.0, author_name="syncd", author_email="syncd@localhost"
    )
    [ws] = config.workspaces
    assert ws.mode is Mode.MANUAL
    assert ws.source == SourceConfig(
        url="https://git.example.com/acme/steps.git",
        branch="main",
        path="export/steps",
        username=None,
        password=None,
        ca_file=None,
    )
    assert (ws.tags, ws.poll_interval, ws.allow_empty, ws.notify) == ((), 60.0, False, ())


def test_a_file_without_workspaces_is_valid(tmp_path: Path) -> None:
    assert load(tmp_path, "state_dir: /srv/syncd\n").workspaces == ()
    assert load(tmp_path, "workspaces: []\n").workspaces == ()
    assert load(tmp_path, "server:\nworkspaces:\n").server == ServerConfig()


def test_defaults_section_applies_to_workspaces_lacking_the_keys(tmp_path: Path) -> None:
    text = """\
        defaults: {mode: automatic, branch: release, path: steps/, poll_interval: 5m}
        workspaces:
          - {id: a, name: a, source: {url: "https://h/r"}}
          - id: b
            name: b
            mode: manual
            poll_interval: 0
            source: {url: "https://h/r", branch: dev, path: other}
    """
    a, b = load(tmp_path, text).workspaces
    assert (a.mode, a.source.branch, a.source.path, a.poll_interval) == (
        Mode.AUTOMATIC,
        "release",
        "steps",
        300.0,
    )
    assert (b.mode, b.source.branch, b.source.path, b.poll_interval) == (
        Mode.MANUAL,
        "dev",
        "other",
        0.0,
    )


def test_a_bad_default_is_reported_once(tmp_path: Path) -> None:
    text = "defaults: {mode: auto}\n" + WS.format(id="a", name="a")
    message = one_problem(tmp_path, text)
    assert message == (
        f'{tmp_path}/syncd.yaml: defaults.mode: expected one of automatic, manual, got str "auto" '
        '(did you mean "automatic"?)'
    )


def test_defaults_refuses_other_keys(tmp_path: Path) -> None:
    message = one_problem(tmp_path, "defaults: {allow_empty: true}\n")
    assert 'defaults.allow_empty: unknown key "allow_empty"' in message
    assert "valid keys: mode, branch, path, poll_interval" in message


# --- File-level errors -------------------------------------------------------------------------


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    message = one_problem(tmp_path, "server:\n  listen: [1,\nworkspaces: : x\n")
    assert message.startswith(f"{tmp_path}/syncd.yaml: line ")
    assert "invalid YAML" in message


def test_invalid_yaml_line_number(tmp_path: Path) -> None:
    message = one_problem(tmp_path, "a: 1\nb: 2\nc: d: e\n")
    assert message.startswith(f"{tmp_path}/syncd.yaml: line 3, column ")


def test_invalid_yaml_does_not_quote_the_line(tmp_path: Path) -> None:
    message = one_problem(tmp_path, "password: git-secret-1f3a: oops\n")
    assert "git-secret-1f3a" not in message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_file_is_refused(tmp_path: Path, text: str) -> None:
    assert one_problem(tmp_path, text) == f"{tmp_path}/syncd.yaml: the file is empty"


@pytest.mark.parametrize(
    ("text", "got"),
    [
        ("- a\n- b\n", "list of 2 items"),
        ("hello\n", "str (not shown)"),
        ("42\n", "int (not shown)"),
    ],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, got: str) -> None:
    assert one_problem(tmp_path, text) == (f"{tmp_path}/syncd.yaml: expected a mapping, got {got}")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read the file"):
        load_config(tmp_path / "nope.yaml", {})


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    message = one_problem(tmp_path, "state_dir: /a\nstate_dir: /b\n")
    assert message.startswith(f"{tmp_path}/syncd.yaml: line 2, column 1:")
    assert 'duplicate key str "state_dir"' in message


def test_yaml_merge_keys_allow_overrides(tmp_path: Path) -> None:
    text = """\
        workspaces:
          - id: a
            name: a
            source: &src {url: "https://h/r", branch: dev}
          - id: b
            name: b
            source: {<<: *src, branch: prod}
    """
    a, b = load(tmp_path, text).workspaces
    assert (a.source.branch, b.source.branch, b.source.url) == ("dev", "prod", "https://h/r")


def test_load_config_accepts_a_str_path_and_reads_os_environ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNCD_TEST_TOKEN", "from-os-environ-0123")
    path = write(tmp_path, "tokens: [{name: t, token_env: SYNCD_TEST_TOKEN, scopes: [read]}]\n")
    config = load_config(str(path))
    assert config.tokens[0].token.reveal() == "from-os-environ-0123"


def test_relative_config_path_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "state_dir: state\n")
    monkeypatch.chdir(tmp_path)
    config = load_config("syncd.yaml", {})
    assert config.path == tmp_path / "syncd.yaml"
    assert config.state_dir == tmp_path / "state"


def test_default_config_path() -> None:
    assert default_config_path({}) == Path("/etc/syncd/syncd.yaml")
    assert default_config_path({"SYNCD_CONFIG": ""}) == Path("/etc/syncd/syncd.yaml")
    assert default_config_path({"SYNCD_CONFIG": "/tmp/x.yaml"}) == Path("/tmp/x.yaml")


# --- Every problem at once ---------------------------------------------------------------------


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    text = """\
        serverr: {}
        server: {listen: "localhost:99999"}
        workspaces:
          - {id: a, name: a, source: {url: "http://h/r"}}
          - {id: b, name: b, source: {url: "https://h/r"}, mode: sometimes}
    """
    found = problems(tmp_path, text)
    assert found == [
        f'{tmp_path}/syncd.yaml: serverr: unknown key "serverr" (did you mean "server"?); '
        "valid keys: server, state_dir, store, include, tokens, webhooks, notifications, "
        "defaults, workspaces, git, console, providers, metrics",
        f"{tmp_path}/syncd.yaml: server.listen: port must be 1 to 65535, got 99999",
        f'{tmp_path}/syncd.yaml: workspaces[0] (id "a").source.url: https is required, '
        "got scheme 'http' in 'http://h/r'",
        f'{tmp_path}/syncd.yaml: workspaces[1] (id "b").mode: expected one of automatic, '
        'manual, got str "sometimes"',
    ]


def test_problems_are_capped(tmp_path: Path) -> None:
    tags = ", ".join(["1"] * 150)
    found = problems(tmp_path, workspace(f"tags: [{tags}]\n"))
    assert len(found) == 101
    assert found[-1] == "... and 50 more problems"
    assert found[0].endswith('workspaces[0] (id "w1").tags[0]: expected a string, got int 1')


# --- Unknown keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where", "hint"),
    [
        ("workspace: []\n", "workspace", '(did you mean "workspaces"?)'),
        ("server: {listn: x}\n", "server.listn", '(did you mean "listen"?)'),
        ("store: {path: x}\n", "store.path", ""),
        ("git: {author: {mail: x}}\n", "git.author.mail", '(did you mean "email"?)'),
        ("notifications: {intervals: 5m}\n", "notifications.intervals", '"interval"'),
        (workspace("sorce: {}\n"), 'workspaces[0] (id "w1").sorce', '"source"'),
        (workspace("poll: 5m\n"), 'workspaces[0] (id "w1").poll', ""),
        (
            WS.format(id="w1", name="p").replace("source: {", "source: {brnch: x, "),
            'workspaces[0] (id "w1").source.brnch',
            '"branch"',
        ),
    ],
)
def test_unknown_keys_are_named_with_the_valid_ones(
    tmp_path: Path, text: str, where: str, hint: str
) -> None:
    message = one_problem(tmp_path, text)
    key = where.rsplit(".", 1)[-1].split(")")[-1]
    assert message.startswith(f'{tmp_path}/syncd.yaml: {where}: unknown key "{key}"')
    assert hint in message
    assert "valid keys: " in message


def test_non_string_keys_are_refused(tmp_path: Path) -> None:
    message = one_problem(tmp_path, "server: {1: x}\n")
    assert message == f"{tmp_path}/syncd.yaml: server: keys must be strings, got int 1"


# --- Types and sizes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "where", "expected"),
    [
        ("tags: abc\n", "tags", 'expected a list, got str "abc"'),
        ("tags: [a, 2]\n", "tags[1]", "expected a string, got int 2"),
        ("tags: [[a]]\n", "tags[0]", "expected a string, got list of 1 items"),
        ("allow_empty: 'no'\n", "allow_empty", 'expected true or false, got str "no"'),
        ("allow_empty: 1\n", "allow_empty", "expected true or false, got int 1"),
        ("mode: 3\n", "mode", "expected one of automatic, manual, got int 3"),
        ("poll_interval: true\n", "poll_interval", "got bool true"),
        ("poll_interval: [1]\n", "poll_interval", "got list of 1 items"),
        ("notify: {a: b}\n", "notify", "expected a list, got mapping"),
    ],
)
def test_type_errors_name_the_expected_type_and_the_value(
    tmp_path: Path, body: str, where: str, expected: str
) -> None:
    message = one_problem(tmp_path, workspace(body))
    assert message.startswith(f'{tmp_path}/syncd.yaml: workspaces[0] (id "w1").{where}: ')
    assert expected in message


def test_huge_strings_are_refused_without_echoing_them(tmp_path: Path) -> None:
    name = "n" * 5000
    message = one_problem(tmp_path, WS.format(id="w1", name=name))
    assert message == (
        f'{tmp_path}/syncd.yaml: workspaces[0] (id "w1").name: is too long: '
        "5000 characters, at most 4096"
    )


def test_huge_url_is_refused(tmp_path: Path) -> None:
    text = WS.format(id="w1", name="p").replace("acme/steps", "a" * 5000)
    assert "source.url: is too long: 5028 characters, at most 4096" in one_problem(tmp_path, text)


def test_long_values_are_shortened_in_messages(tmp_path: Path) -> None:
    message = one_problem(tmp_path, workspace(f"allow_empty: {'x' * 300}\n"))
    assert message.endswith("expected true or false, got str of 300 characters")


def test_control_characters_are_refused(tmp_path: Path) -> None:
    message = one_problem(tmp_path, WS.format(id="w1", name='"a\\u0007b"'))
    assert message.endswith('.name: must not contain control characters, got str "a\\u0007b"')


@pytest.mark.parametrize("name", ['""', '"  "'])
def test_empty_strings_are_refused(tmp_path: Path, name: str) -> None:
    message = one_problem(tmp_path, WS.format(id="w1", name=name))
    assert message.endswith('workspaces[0] (id "w1").name: must not be empty')


# --- Server, state_dir, store ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("127.0.0.1:8080", "127.0.0.1", 8080),
        ("0.0.0.0:80", "0.0.0.0", 80),
        ("localhost:9000", "localhost", 9000),
        ("[::1]:8080", "::1", 8080),
        ("[::]:65535", "::", 65535),
    ],
)
def test_server_listen(tmp_path: Path, listen: str, host: str, port: int) -> None:
    config = load(tmp_path, f'server: {{listen: "{listen}", max_body_bytes: 10}}\n')
    assert config.server == ServerConfig(host, port, 10)


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("8080", 'expected "host:port" or "[ipv6]:port", got str "8080"'),
        (":8080", 'expected "host:port" or "[ipv6]:port", got str ":8080"'),
        ("::1:8080", 'expected "host:port" or "[ipv6]:port"'),
        ("host:http", 'expected "host:port" or "[ipv6]:port"'),
        ("host:0", "port must be 1 to 65535, got 0"),
        ("host:70000", "port must be 1 to 65535, got 70000"),
    ],
)
def test_server_listen_refused(tmp_path: Path, listen: str, expected: str) -> None:
    message = one_problem(tmp_path, f'server: {{listen: "{listen}"}}\n')
    assert message.startswith(f"{tmp_path}/syncd.yaml: server.listen: {expected}")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", "must be at least 1, got 0"),
        ("-5", "must be at least 1, got -5"),
        ("true", "expected an integer, got bool true"),
        ("1MB", 'expected an integer, got str "1MB"'),
        ("1.5", "expected an integer, got float 1.5"),
    ],
)
def test_max_body_bytes(tmp_path: Path, value: str, expected: str) -> None:
    message = one_problem(tmp_path, f"server: {{max_body_bytes: {value}}}\n")
    assert message == f"{tmp_path}/syncd.yaml: server.max_body_bytes: {expected}"


def test_relative_state_dir_resolves_against_the_config_file(tmp_path: Path) -> None:
    config = load(tmp_path, "state_dir: state\n")
    assert config.state_dir == tmp_path / "state"
    assert config.store.sqlite_path == tmp_path / "state" / "syncd.db"
    assert config.store.url == f"sqlite:///{tmp_path}/state/syncd.db"


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///srv/syncd/db.sqlite", "/srv/syncd/db.sqlite"),
        ("sqlite:////srv/syncd/db.sqlite", "/srv/syncd/db.sqlite"),
        ("sqlite:data/syncd.db", "{tmp}/data/syncd.db"),
        ("sqlite:./syncd.db", "{tmp}/syncd.db"),
        ("sqlite:../x/syncd.db", "{parent}/x/syncd.db"),
    ],
)
def test_store_url(tmp_path: Path, url: str, path: str) -> None:
    config = load(tmp_path, f'store: {{url: "{url}"}}\n')
    expected = Path(path.format(tmp=tmp_path, parent=tmp_path.parent))
    assert config.store.sqlite_path == expected
    # Written the way SQLAlchemy reads an absolute path: four slashes.
    assert config.store.url == f"sqlite:///{expected}"
    assert config.store.url.startswith("sqlite:////")


@pytest.mark.parametrize("url", ["mysql://db/syncd", "sqlite://host/x.db", "sqlite:", "x.db"])
def test_store_url_refused(tmp_path: Path, url: str) -> None:
    message = one_problem(tmp_path, f'store: {{url: "{url}"}}\n')
    assert message.startswith(f"{tmp_path}/syncd.yaml: store.url: expected sqlite:///ABSOLUTE/PATH")
    assert url in message


def test_store_url_refusal_hides_credentials(tmp_path: Path) -> None:
    message = one_problem(tmp_path, 'store: {url: "postgres://u:git-secret-1f3a@db/syncd"}\n')
    assert 'got str "postgres://db/syncd"' in message


def test_store_postgresql_url_with_password_from_env_or_file(tmp_path: Path) -> None:
    url = "postgresql://syncd@db.example.com:5433/syncd?sslmode=require"
    text = f'store: {{url: "{url}", password_env: PG_PASSWORD}}\n'
    config = load(tmp_path, text, {"PG_PASSWORD": "pg-secret-9a"})
    assert config.store.is_postgres and config.store.url == url
    assert config.store.password is not None and config.store.password.reveal() == "pg-secret-9a"
    assert "pg-secret-9a" not in repr(config.store)
    assert config.store.where == "db.example.com:5433/syncd"
    (tmp_path / "pg.pass").write_text("from-file\n")
    text = 'store: {url: "postgres://db/syncd", password_file: pg.pass}\n'
    config = load(tmp_path, text)
    assert config.store.password is not None and config.store.password.reveal() == "from-file"
    assert config.store.where == "db:5432/syncd"
    # No password at all: trust, peer or a client certificate.
    assert load(tmp_path, 'store: {url: "postgresql://db/syncd"}\n').store.password is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://u:pg-secret-1@db/syncd",
            "holds a password: give it with store.password_env",
        ),
        ("postgresql://db/syncd?password=pg-secret-1", "holds a password"),
        ("postgresql://db", "expected postgresql://[USER@]HOST[:PORT]/DATABASE"),
        ("postgresql:///syncd", "expected postgresql://[USER@]HOST[:PORT]/DATABASE"),
        ("postgresql://db:99999/syncd", "expected postgresql://[USER@]HOST[:PORT]/DATABASE"),
    ],
)
def test_store_postgresql_url_refused(tmp_path: Path, url: str, expected: str) -> None:
    message = one_problem(tmp_path, f'store: {{url: "{url}"}}\n')
    assert message.startswith(f"{tmp_path}/syncd.yaml: store.url: {expected}")
    assert "pg-secret-1" not in message


def test_store_password_needs_a_postgresql_url(tmp_path: Path) -> None:
    message = one_problem(tmp_path, "store: {password_env: PG_PASSWORD}\n", {"PG_PASSWORD": "x"})
    assert (
        message
        == f"{tmp_path}/syncd.yaml: store.password_env: a password needs a postgresql:// url"
    )
    text = 'store: {url: "postgresql://db/s", password_env: NOT_SET}\n'
    assert "environment variable NOT_SET is not set" in one_problem(tmp_path, text, {})


def test_store_config_sqlite_path_property() -> None:
    assert StoreConfig("sqlite:///var/lib/x.db").sqlite_path == Path("/var/lib/x.db")
    assert StoreConfig("sqlite:////var/lib/x.db").sqlite_path == Path("/var/lib/x.db")
    assert StoreConfig("sqlite:x.db").sqlite_path == Path("x.db")


# --- Include -----------------------------------------------------------------------------------


def test_include_glob_adds_workspaces_in_sorted_order(tmp_path: Path) -> None:
    write(tmp_path, WS.format(id="b", name="b"), "workspaces.d/20-b.yaml")
    write(tmp_path, WS.format(id="a", name="a"), "workspaces.d/10-a.yaml")
    write(tmp_path, WS.format(id="x", name="x"), "workspaces.d/notes.txt")
    text = "include: workspaces.d/*.yaml\n" + WS.format(id="main", name="m")
    config = load(tmp_path, text)
    assert [ws.id for ws in config.workspaces] == ["main", "a", "b"]
    assert config.files == (
        tmp_path / "syncd.yaml",
        tmp_path / "workspaces.d/10-a.yaml",
        tmp_path / "workspaces.d/20-b.yaml",
    )
    assert config.workspace("b").file == tmp_path / "workspaces.d/20-b.yaml"


def test_include_list_of_globs_without_duplicates(tmp_path: Path) -> None:
    write(tmp_path, WS.format(id="a", name="a"), "one/a.yaml")
    write(tmp_path, WS.format(id="b", name="b"), "two/b.yaml")
    other = tmp_path.parent / f"{tmp_path.name}-abs"
    write(other, WS.format(id="c", name="c"), "c.yaml")
    text = f"include: [two/*.yaml, one/*.yaml, '*/*.yaml', '{other}/*.yaml', none/*.yaml]\n"
    config = load(tmp_path, text)
    assert [ws.id for ws in config.workspaces] == ["b", "a", "c"]
    assert len(config.files) == 4


def test_include_matching_nothing_is_fine(tmp_path: Path) -> None:
    assert load(tmp_path, "include: nothing/*.yaml\n").files == (tmp_path / "syncd.yaml",)


def test_include_applies_the_main_files_defaults(tmp_path: Path) -> None:
    write(tmp_path, WS.format(id="a", name="a"), "inc/a.yaml")
    config = load(tmp_path, "include: inc/*.yaml\ndefaults: {mode: automatic}\n")
    assert config.workspace("a").mode is Mode.AUTOMATIC


def test_included_file_may_not_include(tmp_path: Path) -> None:
    write(tmp_path, "include: '*.yaml'\n" + WS.format(id="a", name="a"), "inc/a.yaml")
    message = one_problem(tmp_path, "include: inc/*.yaml\n")
    assert (
        message == f"{tmp_path}/inc/a.yaml: include: an included file may not include other files"
    )


def test_include_of_the_main_file_is_refused(tmp_path: Path) -> None:
    message = one_problem(tmp_path, "include: ['*.yaml']\n")
    assert message == (
        f"{tmp_path}/syncd.yaml: include[0]: includes the main config file itself "
        f"({tmp_path}/syncd.yaml)"
    )


def test_included_file_holds_only_workspaces(tmp_path: Path) -> None:
    write(tmp_path, "defaults: {mode: automatic}\nworkspaces: []\n", "inc/a.yaml")
    message = one_problem(tmp_path, "include: inc/*.yaml\n")
    assert message == (
        f'{tmp_path}/inc/a.yaml: defaults: unknown key "defaults"; valid keys: workspaces'
    )


def test_problems_in_included_files_name_that_file(tmp_path: Path) -> None:
    write(tmp_path, WS.format(id="a", name="a") + "    mode: sometimes\n", "inc/a.yaml")
    write(tmp_path, "workspaces: [1, \n", "inc/b.yaml")
    write(tmp_path, "", "inc/c.yaml")
    found = problems(tmp_path, "include: inc/*.yaml\n")
    assert found[0].startswith(f'{tmp_path}/inc/a.yaml: workspaces[0] (id "a").mode: expected')
    assert found[1].startswith(f"{tmp_path}/inc/b.yaml: line ")
    assert found[2] == f"{tmp_path}/inc/c.yaml: the file is empty"
    assert len(found) == 3


def test_include_must_be_strings(tmp_path: Path) -> None:
    message = one_problem(tmp_path, "include: [1]\n")
    assert message == f"{tmp_path}/syncd.yaml: include[0]: expected a string, got int 1"


def test_duplicate_ids_across_files_name_both_files(tmp_path: Path) -> None:
    write(tmp_path, WS.format(id="12345", name="b"), "inc/b.yaml")
    message = one_problem(tmp_path, "include: inc/*.yaml\n" + WS.format(id="12345", name="a"))
    assert message == (
        f'{tmp_path}/inc/b.yaml: workspaces[0] (id "12345").id: duplicate workspace id "12345": '
        f'also defined in {tmp_path}/syncd.yaml at workspaces[0] (id "12345")'
    )


def test_duplicate_ids_in_one_file(tmp_path: Path) -> None:
    text = WS.format(id="a", name="x") + "  - {id: a, name: y, source: {url: 'https://h/r'}}\n"
    assert 'workspaces[1] (id "a").id: duplicate workspace id "a"' in one_problem(tmp_path, text)


# --- Workspaces --------------------------------------------------------------------------------


def test_integer_id_is_read_as_a_string(tmp_path: Path) -> None:
    text = "workspaces:\n  - {id: 12345, name: prod, source: {url: 'https://h/r'}}\n"
    assert load(tmp_path, text).workspaces[0].id == "12345"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", "expected a string, got bool true"),
        ("1.5", "expected a string, got float 1.5"),
        ("'a b'", "expected letters, digits, '.', '_' or '-'"),
        ("'a/b'", "expected letters, digits"),
        ("'-a'", "expected letters, digits"),
        ("'" + "a" * 129 + "'", "at most 128"),
        ("''", "must not be empty"),
    ],
)
def test_bad_ids(tmp_path: Path, value: str, expected: str) -> None:
    text = f"workspaces:\n  - {{id: {value}, name: prod, source: {{url: 'https://h/r'}}}}\n"
    message = one_problem(tmp_path, text)
    assert message.startswith(f"{tmp_path}/syncd.yaml: workspaces[0]")
    assert ".id: " in message
    assert expected in message


def test_required_workspace_keys(tmp_path: Path) -> None:
    found = problems(tmp_path, "workspaces:\n  - {tags: []}\n  - {id: x, name: ~, source: {}}\n")
    assert found == [
        f"{tmp_path}/syncd.yaml: workspaces[0].id: is required",
        f"{tmp_path}/syncd.yaml: workspaces[0].name: is required",
        f"{tmp_path}/syncd.yaml: workspaces[0].source: is required",
        f'{tmp_path}/syncd.yaml: workspaces[1] (id "x").name: is required, got null',
        f'{tmp_path}/syncd.yaml: workspaces[1] (id "x").source.url: is required',
    ]


def test_workspaces_must_be_a_list_of_mappings(tmp_path: Path) -> None:
    assert one_problem(tmp_path, "workspaces: {a: 1}\n").endswith(
        "workspaces: expected a list, got mapping"
    )
    assert one_problem(tmp_path, "workspaces: [7]\n").endswith(
        "workspaces[0]: expected a mapping, got int 7"
    )


def test_tags_notify_and_allow_empty(tmp_path: Path) -> None:
    text = "notifications: {smtp: {host: localhost, from: syncd@example.com}}\n" + workspace(
        "tags: [prod, eu]\nallow_empty: true\nnotify: ops@example.com\n"
    )
    [ws] = load(tmp_path, text).workspaces
    assert (ws.tags, ws.allow_empty, ws.notify) == (("prod", "eu"), True, ("ops@example.com",))


def test_max_deletes_is_a_count_or_a_percentage_and_defaults_to_none(tmp_path: Path) -> None:
    text = """\
        defaults: {max_deletes: "20%"}
        workspaces:
          - {id: a, name: a, source: {url: "https://h/r"}}
          - {id: b, name: b, max_deletes: 50, source: {url: "https://h/r"}}
          - {id: c, name: c, max_deletes: "7", source: {url: "https://h/r"}}
    """
    a, b, c = load(tmp_path, text).workspaces
    assert (a.max_deletes, b.max_deletes, c.max_deletes) == (
        DeleteLimit(percent=20.0),
        DeleteLimit(count=50),
        DeleteLimit(count=7),
    )
    assert (str(a.max_deletes), a.max_deletes and a.max_deletes.allowed(1000)) == ("20%", 200)
    [ws] = load(tmp_path, workspace("")).workspaces
    assert ws.max_deletes is None


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("-1", "must be a count of at least 0 or a percentage, got -1"),
        ("'0%'", 'a percentage must be more than 0% and at most 100%, got str "0%"'),
        ("'150%'", 'a percentage must be more than 0% and at most 100%, got str "150%"'),
        ("lots", 'expected a count like 50 or a percentage like "20%", got str "lots"'),
        ("true", 'expected a count like 50 or a percentage like "20%", got bool true'),
        ("1.5", 'expected a count like 50 or a percentage like "20%", got float 1.5'),
    ],
)
def test_max_deletes_refuses_other_values(tmp_path: Path, value: str, fragment: str) -> None:
    message = one_problem(tmp_path, workspace(f"max_deletes: {value}\n"))
    assert message.endswith(f'workspaces[0] (id "w1").max_deletes: {fragment}'), message
    message = one_problem(tmp_path, f"defaults: {{max_deletes: {value}}}\n")
    assert message.endswith(f"defaults.max_deletes: {fragment}"), message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://git.example.com/acme/steps.git", "https is required, got scheme 'http'"),
        ("git://git.example.com/acme/steps.git", "https is required, got scheme 'git'"),
        ("ssh://git@git.example.com/acme/steps.git", "https is required, got scheme 'ssh'"),
        ("file:///srv/git/steps.git", "https is required, got scheme 'file'"),
        ("git@git.example.com:acme/steps.git", "https is required, got scp-like"),
        ("/srv/git/steps.git", "https is required, got no scheme"),
        ("https:///acme/steps", "has no host"),
        ("https://bot:git-secret-1f3a@h/r.git", "embeds credentials"),
        ("https://git-secret-1f3a@h/r.git", "embeds credentials"),
    ],
)
def test_source_url_must_be_https(tmp_path: Path, url: str, expected: str) -> None:
    text = WS.format(id="w1", name="p").replace("https://git.example.com/acme/steps.git", url)
    message = one_problem(tmp_path, text)
    assert message.startswith(f'{tmp_path}/syncd.yaml: workspaces[0] (id "w1").source.url: ')
    assert expected in message


@pytest.mark.parametrize(
    ("branch", "expected"),
    [
        ("main", "main"),
        ("release/1.x", "release/1.x"),
        ("refs/heads/prod", "prod"),
        ("feature-a_b.c", "feature-a_b.c"),
    ],
)
def test_branch(tmp_path: Path, branch: str, expected: str) -> None:
    text = WS.format(id="w1", name="p").replace("source: {", f"source: {{branch: '{branch}', ")
    assert load(tmp_path, text).workspaces[0].source.branch == expected


@pytest.mark.parametrize(
    "branch",
    [
        *("a b", "a..b", "-x", "/x", "x/", "x.lock", "a/.b", "a~1", "a^", "a:b", "a?", "a*"),
        *("a[", "@", "a\\\\b", "refs/heads/", "a//b", "x.", "a@{1}"),
    ],
)
def test_bad_branches(tmp_path: Path, branch: str) -> None:
    text = WS.format(id="w1", name="p").replace("source: {", f'source: {{branch: "{branch}", ')
    message = one_problem(tmp_path, text)
    assert message.startswith(f'{tmp_path}/syncd.yaml: workspaces[0] (id "w1").source.branch: ')


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("export/steps", "export/steps"),
        ("export/steps/", "export/steps"),
        ("export//steps///", "export/steps"),
        ("./export/./steps", "export/steps"),
        ("steps", "steps"),
        (".", ""),
    ],
)
def test_source_path_is_normalized(tmp_path: Path, path: str, expected: str) -> None:
    text = WS.format(id="w1", name="p").replace("source: {", f"source: {{path: '{path}', ")
    assert load(tmp_path, text).workspaces[0].source.path == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/export/steps", 'must be relative to the repository root, got str "/export/steps"'),
        ("../steps", "must not contain '..'"),
        ("export/../../steps", "must not contain '..'"),
        ("", "must not be empty"),
    ],
)
def test_bad_source_paths(tmp_path: Path, path: str, expected: str) -> None:
    text = WS.format(id="w1", name="p").replace("source: {", f"source: {{path: '{path}', ")
    message = one_problem(tmp_path, text)
    where = f'{tmp_path}/syncd.yaml: workspaces[0] (id "w1").source.path: '
    assert message.startswith(where + expected)


@pytest.mark.parametrize(
    ("value", "seconds"), [("0", 0.0), ("0s", 0.0), ("1s", 1.0), ("30s", 30.0), ("90", 90.0)]
)
def test_poll_interval(tmp_path: Path, value: str, seconds: float) -> None:
    assert load(tmp_path, workspace(f"poll_interval: {value}\n")).workspaces[0].poll_interval == (
        seconds
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.5s", 'must be 0 (webhooks only) or at least 1s, got str "0.5s"'),
        ("500ms", "must be 0 (webhooks only) or at least 1s"),
        ("0.2", "must be 0 (webhooks only) or at least 1s, got float 0.2"),
        ("-1s", 'a duration may not be negative, got str "-1s"'),
        ("-5", "a duration may not be negative, got int -5"),
        ("soon", 'expected a duration such as 30s, 5m, 1h30m or 500ms, got str "soon"'),
    ],
)
def test_bad_poll_interval(tmp_path: Path, value: str, expected: str) -> None:
    message = one_problem(tmp_path, workspace(f"poll_interval: {value}\n"))
    where = f'{tmp_path}/syncd.yaml: workspaces[0] (id "w1").poll_interval: '
    assert message.startswith(where + expected)


@pytest.mark.parametrize("address", ["ops", "ops@", "@example.com", "a b@c", "Ops <ops@x.org>"])
def test_bad_notify_addresses(tmp_path: Path, address: str) -> None:
    text = "notifications: {smtp: {host: h, from: s@h}}\n" + workspace(f"notify: ['{address}']\n")
    message = one_problem(tmp_path, text)
    assert message.startswith(f'{tmp_path}/syncd.yaml: workspaces[0] (id "w1").notify[0]: ')
    assert "expected an e-mail address" in message


def test_notify_needs_smtp(tmp_path: Path) -> None:
    message = one_problem(tmp_path, workspace("notify: [ops@example.com]\n"))
    assert message == (
        f'{tmp_path}/syncd.yaml: workspaces[0] (id "w1").notify: sending e-mail needs '
        "notifications.smtp, which is not configured"
    )


def test_ca_file_resolves_against_the_defining_file(tmp_path: Path) -> None:
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc" / "ca.pem").write_text("pem")
    text = WS.format(id="a", name="a").replace("source: {", "source: {ca_file: ca.pem, ")
    write(tmp_path, text, "inc/a.yaml")
    config = load(tmp_path, "include: inc/*.yaml\n")
    assert config.workspace("a").source.ca_file == tmp_path / "inc" / "ca.pem"


def test_missing_ca_file(tmp_path: Path) -> None:
    text = WS.format(id="w1", name="p").replace("source: {", "source: {ca_file: nope.pem, ")
    message = one_problem(tmp_path, text)
    assert message == (
        f'{tmp_path}/syncd.yaml: workspaces[0] (id "w1").source.ca_file: '
        f"{tmp_path}/nope.pem is not a readable file"
    )


def test_workspace_lookup(tmp_path: Path) -> None:
    config = load(tmp_path, WS.format(id="a", name="a"))
    assert config.workspace("a").name == "a"
    with pytest.raises(NotFound, match="'b'"):
        config.workspace("b")


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "webhooks: {github: {secrets_env: GITHUB_WEBHOOK_SECRET}}\n" + WS.format(id="a", name="a"),
    )
    with pytest.raises(AttributeError):
        config.workspaces[0].name = "b"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.webhooks["gitea"] = WebhookConfig(())  # type: ignore[index]


# --- Secrets -----------------------------------------------------------------------------------


def test_env_and_file_secrets(tmp_path: Path) -> None:
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "git").write_text("from-file\n\n")
    (tmp_path / "creds" / "crlf").write_text("crlf-secret-0123456\r\n")
    text = """\
        tokens:
          - {name: a, token_env: SYNCD_TOKEN, scopes: [read]}
          - {name: b, token_file: creds/crlf, scopes: [write, export]}
        workspaces:
          - id: w1
            name: p
            source: {url: "https://h/r", username: bot, password_file: creds/git}
    """
    config = load(tmp_path, text)
    a, b = config.tokens
    assert a.token == Secret(ENV["SYNCD_TOKEN"], "env SYNCD_TOKEN")
    assert b.token.reveal() == "crlf-secret-0123456"
    assert b.token.source == f"file {tmp_path}/creds/crlf"
    password = config.workspaces[0].source.password
    assert password is not None
    assert password.reveal() == "from-file\n"  # only one trailing newline is stripped
    assert password.source == f"file {tmp_path}/creds/git"


def test_secret_file_with_absolute_path(tmp_path: Path) -> None:
    secret = tmp_path / "abs-secret"
    secret.write_text("absolute-0123456789")
    config = load(tmp_path, f"tokens: [{{name: a, token_file: '{secret}', scopes: [read]}}]\n")
    assert config.tokens[0].token.reveal() == "absolute-0123456789"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("token_env: MISSING_VAR", "token_env: environment variable MISSING_VAR is not set"),
        ("token_env: EMPTY_VAR", "token_env: environment variable EMPTY_VAR is empty"),
        ("token_env: 'not a name!'", "expected the name of an environment variable"),
        ("token_env: ghp_abc123", "environment variable (name not shown) is not set"),
        ("token_file: nope", "token_file: cannot read {tmp}/nope: No such file or directory"),
        ("token_file: empty", "token_file: {tmp}/empty is empty"),
        ("token_file: newline", "token_file: {tmp}/newline is empty"),
        ("token_file: binary", "token_file: {tmp}/binary is not UTF-8 text"),
        ("token_file: .", "token_file: cannot read {tmp}: Is a directory"),
        ("token_env: SYNCD_TOKEN, token_file: x", ": give token_env or token_file, not both"),
        ("token_env: [A]", "token_env: expected a string, got list of 1 items"),
        ("token_env: ~", ": needs token_env or token_file"),
    ],
)
def test_secret_problems_name_the_variable_or_file(
    tmp_path: Path, entry: str, expected: str
) -> None:
    (tmp_path / "empty").write_text("")
    (tmp_path / "newline").write_text("\n")
    (tmp_path / "binary").write_bytes(b"\xff\xfe")
    env = dict(ENV, EMPTY_VAR="")
    message = one_problem(tmp_path, f"tokens: [{{name: t, {entry}, scopes: [read]}}]\n", env)
    assert message.startswith(f'{tmp_path}/syncd.yaml: tokens[0] (name "t")')
    assert expected.format(tmp=tmp_path) in message
    assert "ghp_abc123" not in message


@pytest.mark.parametrize(
    ("text", "where", "use"),
    [
        (
            "tokens: [{name: t, token: SECRETVALUE, scopes: [read]}]\n",
            'tokens[0] (name "t").token',
            "token_env",
        ),
        (
            WS.format(id="w1", name="p").replace("source: {", "source: {password: SECRETVALUE, "),
            'workspaces[0] (id "w1").source.password',
            "password_env",
        ),
        (
            "webhooks: {github: {secrets: [SECRETVALUE]}}\n",
            "webhooks.github.secrets",
            "secrets_env",
        ),
        ("webhooks: {gitea: {secret: SECRETVALUE}}\n", "webhooks.gitea.secret", "secrets_env"),
        (
            "webhooks: {gitlab: {signing_secrets: SECRETVALUE, secrets_env: GITLAB_WEBHOOK_TOKEN}}",
            "webhooks.gitlab.signing_secrets",
            "signing_secrets_env",
        ),
        (
            "notifications: {smtp: {host: h, from: a@b, username: u, password: SECRETVALUE}}\n",
            "notifications.smtp.password",
            "password_env",
        ),
        ("password: SECRETVALUE\n", "password", "secrets never sit in the file"),
        ("git: {token: SECRETVALUE}\n", "git.token", "secrets never sit in the file"),
    ],
)
def test_plain_secret_keys_are_refused_without_echoing_the_value(
    tmp_path: Path, text: str, where: str, use: str
) -> None:
    found = problems(tmp_path, text)
    assert found[0].startswith(f"{tmp_path}/syncd.yaml: {where}: secrets never sit in the file")
    assert use in found[0]
    assert all("SECRETVALUE" not in line for line in found)


def test_secret_repr_and_str_hide_the_value() -> None:
    secret = Secret("hunter2", "env X")
    assert repr(secret) == str(secret) == f"{secret}" == "Secret(env X)"
    assert secret.reveal() == "hunter2"
    assert "hunter2" not in repr(SourceConfig("https://h/r", password=secret))


def test_repr_of_config_holds_no_secret(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("file-secret-9a9a\n")
    text = """\
        tokens: [{name: ci, token_env: SYNCD_TOKEN, scopes: [read]}]
        webhooks:
          github: {secrets_env: [GITHUB_WEBHOOK_SECRET]}
          gitlab: {secrets_env: GITLAB_WEBHOOK_TOKEN, signing_secrets_file: [pw]}
          azure-devops: {secrets_file: pw, username: azure}
        notifications:
          smtp: {host: h, tls: starttls, from: s@h, username: u, password_env: SMTP_PASSWORD}
        workspaces:
          - {id: a, name: a, source: {url: "https://h/r", username: bot, password_env: GIT_TOKEN}}
    """
    config = load(tmp_path, text)
    shown = repr(config) + str(config)
    for secret in (*SECRET_VALUES, "file-secret-9a9a"):
        assert secret not in shown
    assert "Secret(env GIT_TOKEN)" in shown


def test_problems_never_show_secret_values(tmp_path: Path) -> None:
    # Every secret resolves; every other key is wrong: none of the values may leak.
    text = """\
        tokens: [{name: ci, token_env: SYNCD_TOKEN, scopes: [root]}]
        webhooks: {github: {secrets_env: [GITHUB_WEBHOOK_SECRET, NOPE]}}
        notifications:
          smtp: {host: h, tls: tls, from: bad, username: u, password_env: SMTP_PASSWORD}
        workspaces:
          - {id: a, name: a, source: {url: "ssh://h/r", password_env: GIT_TOKEN}}
    """
    assert len(problems(tmp_path, text)) == 4


# --- Tokens ------------------------------------------------------------------------------------


def test_token_names_are_unique(tmp_path: Path) -> None:
    text = """\
        tokens:
          - {name: ci, token_env: SYNCD_TOKEN, scopes: [read]}
          - {name: ci, token_env: SYNCD_TOKEN, scopes: [sync]}
    """
    assert one_problem(tmp_path, text) == (
        f'{tmp_path}/syncd.yaml: tokens[1] (name "ci").name: duplicate token name "ci"'
    )


@pytest.mark.parametrize(
    ("scopes", "expected"),
    [
        (
            "[read, wrte]",
            'scopes[1]: unknown scope "wrte" (did you mean "write"?); valid scopes: '
            "audit, export, read, sync, write",
        ),
        ("[root]", 'scopes[0]: unknown scope "root"; valid scopes'),
        ("[]", "scopes: a token needs at least one scope"),
        ("read", 'scopes: expected a list, got str "read"'),
    ],
)
def test_token_scopes(tmp_path: Path, scopes: str, expected: str) -> None:
    text = f"tokens: [{{name: t, token_env: SYNCD_TOKEN, scopes: {scopes}}}]\n"
    message = one_problem(tmp_path, text)
    assert message.startswith(f'{tmp_path}/syncd.yaml: tokens[0] (name "t").{expected}')


def test_all_scopes(tmp_path: Path) -> None:
    text = "tokens: [{name: t, token_env: SYNCD_TOKEN, scopes: [read, sync, write, export]}]\n"
    assert load(tmp_path, text).tokens[0].scopes == {"read", "sync", "write", "export"}


def test_token_required_keys(tmp_path: Path) -> None:
    assert problems(tmp_path, "tokens: [{token_env: SYNCD_TOKEN}]\n") == [
        f"{tmp_path}/syncd.yaml: tokens[0].name: is required",
        f"{tmp_path}/syncd.yaml: tokens[0].scopes: is required",
    ]


# --- Webhooks ----------------------------------------------------------------------------------


def test_webhook_providers_and_secret_forms(tmp_path: Path) -> None:
    (tmp_path / "wh1").write_text("file-one\n")
    (tmp_path / "wh2").write_text("file-two")
    text = """\
        webhooks:
          github: {secrets_env: [GITHUB_WEBHOOK_SECRET, GIT_TOKEN], secrets_file: [wh1, wh2]}
          gitlab: {signing_secrets_env: GITLAB_WEBHOOK_TOKEN}
          gitea: {secrets_env: GITHUB_WEBHOOK_SECRET}
          bitbucket: {secrets_file: wh1}
          bitbucket-server: {secrets_file: [wh2]}
          azure-devops: {secrets_env: [GIT_TOKEN], username: azure}
          generic: {secrets_env: [SYNCD_TOKEN]}
    """
    hooks = load(tmp_path, text).webhooks
    assert tuple(hooks) == WEBHOOK_PROVIDERS
    assert [s.reveal() for s in hooks["github"].secrets] == [
        ENV["GITHUB_WEBHOOK_SECRET"],
        ENV["GIT_TOKEN"],
        "file-one",
        "file-two",
    ]
    assert hooks["gitlab"].secrets == ()
    assert [s.reveal() for s in hooks["gitlab"].signing_secrets] == [ENV["GITLAB_WEBHOOK_TOKEN"]]
    assert hooks["azure-devops"].username == "azure"
    assert hooks["github"].username is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "webhooks: {gitlub: {secrets_env: X}}\n",
            'webhooks.gitlub: unknown key "gitlub" (did you mean "gitlab"?); valid keys: github, '
            "gitlab, gitea, bitbucket, bitbucket-server, azure-devops, generic",
        ),
        (
            "webhooks: {github: {}}\n",
            "webhooks.github: needs at least one secret: secrets_env or secrets_file",
        ),
        ("webhooks: {github: }\n", "webhooks.github: needs at least one secret"),
        (
            "webhooks: {gitlab: {}}\n",
            "webhooks.gitlab: needs at least one secret: secrets_env or secrets_file or "
            "signing_secrets_env/signing_secrets_file",
        ),
        (
            "webhooks: {github: {secrets_env: GIT_TOKEN, signing_secrets_env: Y}}\n",
            'webhooks.github.signing_secrets_env: unknown key "signing_secrets_env"',
        ),
        (
            "webhooks: {github: {secrets_env: GIT_TOKEN, username: u}}\n",
            'webhooks.github.username: unknown key "username"',
        ),
        (
            "webhooks: {github: {secrets_env: [GIT_TOKEN, NOPE]}}\n",
            "webhooks.github.secrets_env[1]: environment variable NOPE is not set",
        ),
        (
            "webhooks: {github: {secrets_file: nope}}\n",
            "webhooks.github.secrets_file: cannot read {tmp}/nope",
        ),
        ("webhooks: [github]\n", "webhooks: expected a mapping, got list of 1 items"),
    ],
)
def test_webhook_problems(tmp_path: Path, text: str, expected: str) -> None:
    message = one_problem(tmp_path, text)
    assert message.startswith(f"{tmp_path}/syncd.yaml: " + expected.format(tmp=tmp_path))


# --- Notifications and git ---------------------------------------------------------------------


@pytest.mark.parametrize(("tls", "port"), [("none", 25), ("starttls", 587), ("tls", 465)])
def test_smtp_default_port_follows_tls(tmp_path: Path, tls: str, port: int) -> None:
    text = f"notifications: {{smtp: {{host: mail, tls: {tls}, from: syncd@example.com}}}}\n"
    smtp = load(tmp_path, text).notifications.smtp
    assert smtp == SmtpConfig("mail", port, tls, "syncd@example.com")  # type: ignore[arg-type]


def test_smtp_full(tmp_path: Path) -> None:
    text = """\
        notifications:
          interval: 1h
          smtp:
            host: mail.example.com
            port: 2525
            tls: starttls
            from: syncd@example.com
            username: syncd
            password_env: SMTP_PASSWORD
            timeout: 10s
    """
    notifications = load(tmp_path, text).notifications
    assert notifications.interval == 3600
    assert notifications.smtp == SmtpConfig(
        "mail.example.com",
        2525,
        "starttls",
        "syncd@example.com",
        "syncd",
        Secret(ENV["SMTP_PASSWORD"], "env SMTP_PASSWORD"),
        10.0,
    )


@pytest.mark.parametrize(
    ("smtp", "expected"),
    [
        (
            "{host: h, from: a@b, tls: ssl}",
            'smtp.tls: expected one of none, starttls, tls, got str "ssl"',
        ),
        ("{host: h, from: a@b, port: 0}", "smtp.port: must be 1 to 65535, got 0"),
        ("{host: h, from: a@b, port: 65536}", "smtp.port: must be 1 to 65535, got 65536"),
        ("{host: h, from: nobody}", 'smtp.from: expected an e-mail address, got str "nobody"'),
        ("{from: a@b}", "smtp.host: is required"),
        ("{host: h}", "smtp.from: is required"),
        ("{host: h, from: a@b, username: u}", "smtp: username and password_env/password_file"),
        (
            "{host: h, from: a@b, tls: tls, password_env: SMTP_PASSWORD}",
            "smtp: username and password_env",
        ),
        (
            "{host: mail.example.com, from: a@b, username: u, password_env: SMTP_PASSWORD}",
            "smtp.tls: a password is sent to 'mail.example.com' only over TLS",
        ),
        ("{host: h, from: a@b, timeout: 0}", "smtp.timeout: must be more than 0"),
        ("{host: h, from: a@b, sender: x}", 'smtp.sender: unknown key "sender"'),
        ("mail.example.com", 'smtp: expected a mapping, got str "mail.example.com"'),
    ],
)
def test_smtp_problems(tmp_path: Path, smtp: str, expected: str) -> None:
    message = one_problem(tmp_path, f"notifications: {{smtp: {smtp}}}\n")
    assert message.startswith(f"{tmp_path}/syncd.yaml: notifications.{expected}")


@pytest.mark.parametrize(
    ("interval", "expected"),
    [("0", "must be more than 0"), ("0s", "must be more than 0"), ("-1m", "may not be negative")],
)
def test_notification_interval(tmp_path: Path, interval: str, expected: str) -> None:
    message = one_problem(tmp_path, f"notifications: {{interval: {interval}}}\n")
    assert message.startswith(f"{tmp_path}/syncd.yaml: notifications.interval: ")
    assert expected in message


def test_git_section(tmp_path: Path) -> None:
    text = "git: {timeout: 2m, author: {name: Sync Bot, email: bot@example.com}}\n"
    assert load(tmp_path, text).git == GitConfig(120.0, "Sync Bot", "bot@example.com")


@pytest.mark.parametrize(
    ("git", "expected"),
    [
        ("{timeout: 0}", "git.timeout: must be more than 0"),
        ("{author: {email: nope}}", 'git.author.email: expected an e-mail address, got str "nope"'),
        ("{author: bob}", 'git.author: expected a mapping, got str "bob"'),
        ("{author: {name: ''}}", "git.author.name: must not be empty"),
    ],
)
def test_git_problems(tmp_path: Path, git: str, expected: str) -> None:
    assert one_problem(tmp_path, f"git: {git}\n") == f"{tmp_path}/syncd.yaml: {expected}"


# --- Durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1m30s", 90.0),
        ("2d", 172800.0),
        ("1.5h", 5400.0),
        ("0", 0.0),
        ("0s", 0.0),
        ("45", 45.0),
        (" 10s ", 10.0),
        (30, 30.0),
        (0, 0.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "s",
        "5 m",
        "5M",
        "1y",
        "-5s",
        "-1",
        -1,
        -0.5,
        "1h-5m",
        "abc",
        "5mm",
        "1e3",
        "inf",
        float("inf"),
        float("nan"),
        True,
        None,
        [1],
        "9" * 100,
    ],
)
def test_parse_duration_refuses(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)  # type: ignore[arg-type]


@given(
    st.integers(0, 1000),
    st.integers(0, 59),
    st.integers(0, 59),
    st.integers(0, 999),
)
def test_parse_duration_round_trips(hours: int, minutes: int, seconds: int, millis: int) -> None:
    expected = hours * 3600 + minutes * 60 + seconds + millis / 1000
    text = (
        "".join(
            f"{n}{unit}"
            for n, unit in ((hours, "h"), (minutes, "m"), (seconds, "s"), (millis, "ms"))
            if n
        )
        or "0s"
    )
    assert parse_duration(text) == pytest.approx(expected)
    assert parse_duration(int(expected)) == int(expected)
    assert parse_duration(str(int(expected))) == int(expected)


@given(st.text(max_size=20))
def test_parse_duration_only_raises_value_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError:
        return
    assert seconds >= 0


def test_file_paths_are_absolute(tmp_path: Path) -> None:
    config = load(tmp_path, "state_dir: ../state\n")
    assert config.state_dir == tmp_path.parent / "state"
    assert os.path.isabs(config.state_dir)


def test_a_short_api_token_is_refused_by_name_never_shown(tmp_path: Path) -> None:
    text = "tokens: [{name: ci, token_env: SYNCD_SHORT_TOKEN, scopes: [read, sync]}]\n"
    problem = one_problem(tmp_path, text, ENV | {"SYNCD_SHORT_TOKEN": "ab"})
    assert problem == (
        f'{tmp_path}/syncd.yaml: tokens[0] (name "ci").token_env: the token from env'
        " SYNCD_SHORT_TOKEN is 2 characters long; an API token needs at least 16, so that it"
        " cannot be guessed (e.g. `openssl rand -hex 32`)"
    )


def test_metrics_section_is_opt_in_and_checked(tmp_path: Path) -> None:
    assert not load(tmp_path, "workspaces: []\n").metrics.per_workspace_histograms
    on = load(tmp_path, "metrics: {per_workspace_histograms: true}\nworkspaces: []\n")
    assert on.metrics.per_workspace_histograms
    found = one_problem(tmp_path, "metrics: {per_workspace_histograms: 'yes'}\n")
    assert "metrics.per_workspace_histograms" in found and "expected true or false" in found
    assert "unknown key" in one_problem(tmp_path, "metrics: {per_workspace: true}\n")
