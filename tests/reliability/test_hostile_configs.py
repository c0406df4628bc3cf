"""Hostile configs: whatever the config files hold, syncd refuses them with a ConfigError that names
the file, quickly, and never shows a secret. `syncd check-config` then exits 2.

- huge values: a 10 MB string, a 100,000-element list (refused, with a bounded report, in
  bounded time);
- wrong types everywhere: hypothesis over documents built from mappings, lists and scalars on
  the config's own keys, over a valid config damaged in a few places, and over YAML-ish text:
  load_config returns a Config or raises ConfigError, nothing else, and no message carries a
  secret (from the environment, from a secret file, or pasted into the file under a secret key);
- include loops: a includes b includes a, a file including itself, globs that match the main
  file, a symlink back to the main file;
- YAML bombs: billion laughs through aliases in every kind of place, merge-key bombs, aliases
  that refer to themselves; run by the CLI in a subprocess with a timeout, so a hang fails;
- files that are not YAML text: not UTF-8, NUL bytes, random bytes, a directory, no file at all,
  a file nobody may read (skipped as root, where chmod cannot forbid it).

Each bug these tests found (deep nesting, tagged nonsense, over-long numbers, lone surrogates,
a non-mapping file echoed, a missing include skipped) has its test here, now passing.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd import cli
from syncd.config import Config, load_config
from syncd.core.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN_SECRET = "tok-3f9a1c-secret-value"
HOOK_SECRET = "hook-77e2-secret-value"
GIT_SECRET = "git-51bd-secret-value"
SMTP_SECRET = "smtp-c0de-secret-value"
FILE_SECRET = "file-9d4e-secret-value"
LOWER_SECRET = "hunter2_lower_secret"  # a secret pasted where a variable name belongs
LITERAL_SECRETS = ("literal-pw-secret-value", "s3cr3t:with/odd chars", LOWER_SECRET)
ENV = {
    "SYNCD_T_TOKEN": TOKEN_SECRET,
    "SYNCD_T_HOOK": HOOK_SECRET,
    "SYNCD_T_GIT": GIT_SECRET,
    "SYNCD_T_SMTP": SMTP_SECRET,
    "SYNCD_T_EMPTY": "",
}
SECRETS = (TOKEN_SECRET, HOOK_SECRET, GIT_SECRET, SMTP_SECRET, FILE_SECRET, *LITERAL_SECRETS)
BOUNDED = 30.0  # seconds any one config may take to be judged, on a slow CI machine
# Examples per hypothesis test: bounded for CI, more in the full reliability run.
FULL = os.environ.get("SYNCD_RELIABILITY", "").lower() == "full"
EXAMPLES = 1000 if FULL else 150


@dataclass(frozen=True)
class Home:
    """A config folder (with one included workspace file) and a secret file outside it."""

    config_dir: Path
    secret_file: Path

    @property
    def main(self) -> Path:
        return self.config_dir / "syncd.yaml"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    root = tmp_path_factory.mktemp("hostile-configs")
    secrets = root / "secrets"
    secrets.mkdir()
    secret_file = secrets / "token"
    secret_file.write_text(FILE_SECRET + "\n")
    config_dir = root / "etc"
    (config_dir / "ws.d").mkdir(parents=True)
    extra = {"workspaces": [{"id": "extra", "name": "extra", "source": {"url": "https://h/x"}}]}
    (config_dir / "ws.d" / "extra.yaml").write_text(yaml.safe_dump(extra))
    return Home(config_dir, secret_file)


def valid_doc(home: Home) -> dict[str, Any]:
    """A config that uses every section, every secret form, and an include."""
    state = home.config_dir.parent / "state"
    return {
        "server": {"listen": "127.0.0.1:8080", "max_body_bytes": 1048576},
        "state_dir": str(state),
        "store": {"url": f"sqlite:///{state}/syncd.db"},
        "include": "ws.d/*.yaml",
        "tokens": [
            {"name": "ci", "token_env": "SYNCD_T_TOKEN", "scopes": ["read", "sync"]},
            {"name": "file", "token_file": str(home.secret_file), "scopes": ["read"]},
        ],
        "webhooks": {
            "github": {"secrets_env": ["SYNCD_T_HOOK"]},
            "gitlab": {"secrets_file": [str(home.secret_file)]},
        },
        "notifications": {
            "interval": "15m",
            "smtp": {
                "host": "localhost",
                "port": 25,
                "tls": "none",
                "from": "syncd@example.com",
                "username": "mailer",
                "password_env": "SYNCD_T_SMTP",
            },
        },
        "defaults": {
            "mode": "manual",
            "branch": "main",
            "path": "export/steps",
            "poll_interval": "60s",
        },
        "git": {"timeout": "30s", "author": {"name": "syncd", "email": "syncd@example.com"}},
        "workspaces": [
            {
                "id": "12345",
                "name": "prod",
                "tags": ["prod"],
                "mode": "automatic",
                "source": {
                    "url": "https://git.example.com/acme/steps.git",
                    "branch": "main",
                    "path": "export/steps",
                    "username": "bot",
                    "password_env": "SYNCD_T_GIT",
                },
                "poll_interval": "30s",
                "allow_empty": False,
                "notify": ["ops@example.com"],
            }
        ],
    }


def write(path: Path, doc: Any) -> Path:
    data = doc if isinstance(doc, bytes) else yaml.safe_dump(doc, sort_keys=False).encode()
    path.write_bytes(data)
    return path


def judge(path: Path) -> Config | ConfigError:
    """load_config's verdict; anything but a Config or a ConfigError fails the test."""
    try:
        return load_config(path, ENV)
    except ConfigError as e:
        return e


def assert_well_refused(error: ConfigError, main: Path) -> None:
    """Every problem names a file, and no secret is shown."""
    text = str(error)
    problems: list[str] = error.problems  # type: ignore[attr-defined]
    assert problems and text == "\n".join(problems)
    for line in problems:
        if line.startswith("... and "):
            continue
        named = Path(line.split(": ", 1)[0])
        assert named == main or named.is_file(), f"names no file: {line[:200]!r}"
    for secret in SECRETS:
        assert secret not in text, f"a secret in the message: {text[:2000]!r}"


def check_config(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, float]:
    """`syncd check-config --config PATH`, in-process: (exit status, stderr, seconds)."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in ENV.items():
            mp.setenv(name, value)
        started = time.monotonic()
        code = cli.main(["check-config", "--config", str(path)])
        seconds = time.monotonic() - started
    return code, capsys.readouterr().err, seconds


def assert_check_config_refuses(
    path: Path, capsys: pytest.CaptureFixture[str], *fragments: str, named: Path | None = None
) -> str:
    code, err, seconds = check_config(path, capsys)
    assert code == 2, err[:2000]
    assert err.startswith("syncd: config refused:\n"), err[:2000]
    assert f"{named or path}: " in err, err[:2000]
    for fragment in fragments:
        assert fragment in err, err[:2000]
    for secret in SECRETS:
        assert secret not in err
    assert seconds < BOUNDED, f"{seconds:.1f}s"
    return err


def test_the_valid_config_the_strategies_damage_is_valid(home: Home) -> None:
    config = judge(write(home.main, valid_doc(home)))
    assert isinstance(config, Config), config
    assert [ws.id for ws in config.workspaces] == ["12345", "extra"]
    assert all(secret not in repr(config) for secret in SECRETS)


# -- huge values -----------------------------------------------------------------------------


def huge(home: Home, key: str, text: str) -> bytes:
    """The valid config with `key` set to `text` (YAML written by hand: dumping and loading a
    10 MB document through PyYAML twice would double the time for nothing)."""
    doc = {k: v for k, v in valid_doc(home).items() if k != key}
    return (yaml.safe_dump(doc, sort_keys=False) + f"{text}\n").encode()


HUGE = {
    "10MB-string": ("state_dir", 'state_dir: "' + "x" * 10_000_000 + '"', "is too long"),
    "100k-workspaces": ("workspaces", "workspaces: [" + ", ".join(["1"] * 100_000) + "]", "more"),
}


@pytest.mark.parametrize("case", list(HUGE))
def test_huge_values_are_refused_in_bounded_time(
    home: Home, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    key, text, fragment = HUGE[case]
    path = home.config_dir / "huge.yaml"
    path.write_bytes(huge(home, key, text))
    err = assert_check_config_refuses(path, capsys, fragment)
    # The report stays readable: at most 100 problems and a count of the rest, each line short.
    lines = err.splitlines()[1:]
    assert len(lines) <= 101 and all(len(line) < 1000 for line in lines), len(lines)
    if case.startswith("100k"):
        assert re.fullmatch(r"\.\.\. and \d+ more problems", lines[-1]), lines[-1]


# -- wrong types everywhere (hypothesis) -----------------------------------------------------

KEYS = sorted(
    {
        *valid_doc(Home(Path("/h/etc"), Path("/h/s"))),
        *("listen", "max_body_bytes", "self_heal_delay", "max_parallel_syncs", "url", "name"),
        *("token_env", "token_file", "scopes", "github", "gitlab", "gitea", "bitbucket"),
        *("bitbucket-server", "azure-devops", "generic", "secrets_env", "secrets_file"),
        *("signing_secrets_env", "signing_secrets_file", "username", "interval", "smtp"),
        *("host", "port", "tls", "from", "password_env", "password_file", "timeout", "mode"),
        *("branch", "path", "poll_interval", "author", "email", "id", "tags", "source"),
        *("allow_empty", "notify", "ca_file", "password", "token", "secret", "secrets"),
        *("signing_secret", "<<", "Workspaces", "state-dir", ""),
    }
)
SECRET_KEYS = {k for k in KEYS if k.endswith(("_env", "_file")) or k in ("password", "token")}
SECRET_KEYS |= {"secret", "secrets", "signing_secret"}
PLAUSIBLE = [
    *("30s", "5m", "1h30m", "500ms", "0", "0s", "-1s", "1e400", "2d", "0.5s", "99999999h"),
    *("https://git.example.com/acme/steps.git", "http://h/x", "git@h:x.git", "ssh://h/x"),
    *("https://user:pw@h/x.git", "https://h", "https://[::1/x", "automatic", "manual"),
    *("main", "refs/heads/main", "refs/heads/", "a..b", "export/steps", "../up", "/abs", ""),
    *("read", "sync", "write", "export", "admin", "127.0.0.1:8080", "[::1]:80", ":80"),
    *("h:99999", "sqlite:///tmp/x.db", "sqlite:rel.db", "sqlite:", "postgres://u:p@h/db"),
    *("none", "tls", "starttls", "ops@example.com", "not-an-email", "12345", "-", "x" * 5000),
    *("SYNCD_T_TOKEN", "SYNCD_T_EMPTY", "SYNCD_T_MISSING", "ws.d/*.yaml", "ws.d", "*.yaml"),
    *("/nonexistent/file", "syncd.yaml", " ", "\t", "a\x00b", "\u202e", "true", "~"),
]
# What a secret key may hold: variable names (set, unset, empty), a secret pasted in by mistake
# (never shown), or for a `_file` key a path (shown: a path is no secret, and a secret pasted
# where a path belongs is shown as the path it is taken for).
ENV_VALUES = [
    *("SYNCD_T_TOKEN", "SYNCD_T_HOOK", "SYNCD_T_GIT", "SYNCD_T_SMTP", "SYNCD_T_MISSING"),
    *("SYNCD_T_EMPTY", *LITERAL_SECRETS),
]
FILE_VALUES = ["/nonexistent/secret", "relative/secret", "", "ws.d"]


def secret_values(key: str) -> st.SearchStrategy[str]:
    return st.sampled_from(FILE_VALUES if key.endswith("_file") else ENV_VALUES)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # a 400-digit duration once raised OverflowError
    st.floats(),
    st.text(max_size=30).filter(lambda t: "**" not in t),  # no recursive glob of the disk
    st.sampled_from(PLAUSIBLE),
)


@st.composite
def nodes(draw: st.DrawFn, depth: int = 0) -> Any:
    """Any value; a mapping's keys are mostly the config's own, and only secret keys (`*_env`,
    `*_file`, `password` ...) ever hold a secret."""
    kind = draw(st.sampled_from(["scalar", "scalar", "map", "list"] if depth < 4 else ["scalar"]))
    if kind == "scalar":
        return draw(scalars)
    if kind == "list":
        return [draw(nodes(depth + 1)) for _ in range(draw(st.integers(0, 3)))]
    mapping: dict[Any, Any] = {}
    for _ in range(draw(st.integers(0, 5))):
        key = draw(st.one_of(st.sampled_from(KEYS), st.text(max_size=8), st.integers(0, 3)))
        if isinstance(key, str) and key in SECRET_KEYS:
            mapping[key] = draw(secret_values(key))
        else:
            mapping[key] = draw(nodes(depth + 1))
    return mapping


def _places(value: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key) in a document, to pick one to damage."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in items:
        out.append((value, key))
        if isinstance(child, dict | list):
            _places(child, out)
    return out


@st.composite
def damaged(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """The valid config with one to four values replaced, keys dropped or keys added."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        container, key = draw(st.sampled_from(_places(doc, [])))
        action = draw(st.sampled_from(["replace", "replace", "drop", "add"]))
        if action == "drop" and isinstance(container, dict):
            del container[key]
        elif action == "add" and isinstance(container[key], dict):
            new = draw(st.sampled_from(KEYS))
            secret = new in SECRET_KEYS
            container[key][new] = draw(secret_values(new) if secret else nodes(2))
        elif isinstance(container, dict) and key in SECRET_KEYS:
            container[key] = draw(secret_values(key))
        else:
            container[key] = draw(nodes(2))
    return doc


PIECES = [
    *("\n", "\n  ", "\n    ", "  ", "- ", ": ", "{", "}", "[", "]", ", ", "&a ", "*a", "&b ", "*b"),
    *("<<: ", "? ", "| ", "> ", "'", '"', "\\", "# c", "---\n", "...\n", "%YAML 1.1\n", "\t"),
    *("workspaces", "id", "source", "url", "tokens", "include", "server", "listen", "name"),
    *("0x1F", "0o17", "1_000", ".inf", ".nan", "~", "null", "yes", "no", "on", "12:30:00"),
    *("\ufeff", "\x85", "\u2028", "\x00", "\x7f", "\x1b[31m", "\udcff", "é"),
]


yamlish = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=4)), max_size=60).map(
    "".join
)


def assert_judged(path: Path, home: Home) -> None:
    verdict = judge(path)
    if isinstance(verdict, ConfigError):
        assert_well_refused(verdict, path)
    else:
        assert all(secret not in repr(verdict) for secret in SECRETS)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=nodes())
def test_any_document_is_a_config_or_a_config_error(home: Home, doc: Any) -> None:
    top = doc if isinstance(doc, dict) else {"workspaces": doc}
    assert_judged(write(home.main, top), home)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_damaged_config_is_a_config_or_a_config_error(home: Home, data: st.DataObject) -> None:
    doc = data.draw(damaged(valid_doc(home)))
    assert_judged(write(home.main, doc), home)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=yamlish)
def test_any_yamlish_text_is_a_config_or_a_config_error(home: Home, text: str) -> None:
    assert_judged(write(home.main, text.encode("utf-8", "surrogatepass")), home)


# -- include loops ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Files to write (relative path -> YAML text, or `-> target` for a symlink)."""

    files: dict[str, str]
    fragment: str
    named: str  # the file the message must name


LOOPS = {
    "a-includes-b-includes-a": Layout(
        {"syncd.yaml": "include: b.yaml\n", "b.yaml": "include: syncd.yaml\nworkspaces: []\n"},
        "include: an included file may not include other files",
        "b.yaml",
    ),
    "b-includes-itself": Layout(
        {"syncd.yaml": "include: b.yaml\n", "b.yaml": "include: b.yaml\n"},
        "an included file may not include other files",
        "b.yaml",
    ),
    "self-include": Layout(
        {"syncd.yaml": "include: syncd.yaml\n"},
        "includes the main config file itself",
        "syncd.yaml",
    ),
    "glob-matches-main": Layout(
        {"syncd.yaml": "include: '*.yaml'\n", "b.yaml": "workspaces: []\n"},
        "includes the main config file itself",
        "syncd.yaml",
    ),
    "recursive-glob-matches-main": Layout(
        {"syncd.yaml": "include: ['**/*.yaml']\n"},
        "includes the main config file itself",
        "syncd.yaml",
    ),
    "absolute-self-include": Layout(
        {"syncd.yaml": "include: {dir}/syncd.yaml\n"},
        "includes the main config file itself",
        "syncd.yaml",
    ),
    "dotdot-self-include": Layout(
        {"syncd.yaml": "include: ../etc/./syncd.yaml\n"},
        "includes the main config file itself",
        "syncd.yaml",
    ),
    "symlink-to-main": Layout(
        {"syncd.yaml": "include: link.yaml\n", "link.yaml": "-> syncd.yaml"},
        "an included file may not include other files",
        "link.yaml",
    ),
}


def lay_out(folder: Path, layout: Layout) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in layout.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if text.startswith("-> "):
            path.symlink_to(text.removeprefix("-> "))
        else:
            path.write_text(text.replace("{dir}", str(folder)))
    return folder / "syncd.yaml"


@pytest.mark.parametrize("case", list(LOOPS))
def test_include_loops_are_refused_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    layout = LOOPS[case]
    main = lay_out(tmp_path / "etc", layout)
    assert_check_config_refuses(
        main, capsys, layout.fragment, named=tmp_path / "etc" / layout.named
    )


@pytest.mark.parametrize(
    "files",
    [
        {"syncd.yaml": "include: missing.yaml\n"},
        {"syncd.yaml": "include: ws.d\n", "ws.d/a.yaml": "workspaces: []\n"},
        {"syncd.yaml": "include: dangling.yaml\n", "dangling.yaml": "-> nowhere.yaml"},
        {"syncd.yaml": "include: loop.yaml\n", "loop.yaml": "-> loop.yaml"},
    ],
    ids=["missing", "a-folder", "dangling-symlink", "symlink-loop"],
)
def test_an_include_that_names_no_readable_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], files: dict[str, str]
) -> None:
    main = lay_out(tmp_path / "etc", Layout(files, "", "syncd.yaml"))
    assert_check_config_refuses(main, capsys, "include")


# -- YAML bombs, in a subprocess with a timeout ----------------------------------------------


def laughs(anchor: str = "l", width: int = 10, depth: int = 9) -> str:
    """Billion laughs: `depth` levels of `width` aliases to the level below (10**9 leaves)."""
    lines = [f"{anchor}0: &{anchor}0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, depth + 1):
        refs = ", ".join([f"*{anchor}{i - 1}"] * width)
        lines.append(f"{anchor}{i}: &{anchor}{i} [{refs}]")
    return "\n".join(lines) + "\n"


def merge_bomb(depth: int = 12) -> str:
    """Merge keys of merge keys: 10**depth keys if a loader copied instead of sharing."""
    lines = ["m0: &m0 {k: v}"]
    lines += [f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 10)}]}}" for i in range(1, depth)]
    return "\n".join(lines) + "\n"


BOMBS = {
    # Under unknown keys: refused by name, the aliases never walked.
    "laughs-unknown-keys": laughs(),
    # Where the checks walk lists: workspaces, tags, include, tokens, notify, scopes.
    "laughs-in-workspaces": laughs() + "workspaces: *l9\n",
    "laughs-in-tags": laughs()
    + "workspaces: [{id: a, name: a, tags: *l9, notify: *l9, source: {url: 'https://h/x'}}]\n",
    "laughs-in-include": laughs() + "include: *l9\n",
    "laughs-in-tokens": laughs() + "tokens: [{name: a, token_env: *l9, scopes: *l9}]\n",
    "laughs-as-keys": laughs() + "server: {? *l9 : 1}\n",
    "merge-keys": merge_bomb() + "defaults: {<<: *m11}\n",
    "alias-to-itself": "workspaces: &w [*w, *w]\ntokens: &t [*t]\ndefaults: &d {x: *d}\n",
    "wide-aliases": "a: &a ["
    + ", ".join(["x"] * 1000)
    + "]\nworkspaces: ["
    + ", ".join(["*a"] * 20_000)
    + "]\n",
}


@pytest.mark.parametrize("case", list(BOMBS))
def test_yaml_bombs_are_refused_in_bounded_time(tmp_path: Path, case: str) -> None:
    path = tmp_path / "syncd.yaml"
    path.write_text(BOMBS[case])
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "syncd", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=BOUNDED + 30,  # a hang fails here, instead of hanging the suite
        cwd=REPO_ROOT,
        env={k: v for k, v in os.environ.items() if k != "SYNCD_CONFIG"},
    )
    seconds = time.monotonic() - started
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert f"{path}: " in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(proc.stderr) < 100_000, len(proc.stderr)
    assert seconds < BOUNDED, f"{seconds:.1f}s"


# -- files that are not YAML text ------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("state_dir: caf\u00e9\n".encode("latin-1"), "invalid YAML"),
        (b"state_dir: a\x00b\n", "invalid YAML"),
        (b"\x80\x81\xfe" * 100, "invalid YAML"),  # (\xff\xfe would be a UTF-16 BOM)
        (bytes(range(256)) * 4, "invalid YAML"),
        (b"", "the file is empty"),
        (b"# only a comment\n", "the file is empty"),
        (b"\xef\xbb\xbf", "the file is empty"),
        (b"just a string\n", "expected a mapping, got str"),
        (b"- a\n- list\n", "expected a mapping, got list"),
        (b"server: {}\n---\nserver: {}\n", "expected a single document"),
        (b"\tserver: {}\n", "invalid YAML"),
    ],
    ids=[
        "latin-1",
        "nul",
        "high-bytes",
        "every-byte",
        "empty",
        "comment",
        "bom-only",
        "scalar",
        "list",
        "two-documents",
        "tab",
    ],
)
def test_a_file_that_is_not_a_yaml_mapping_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes, fragment: str
) -> None:
    path = tmp_path / "syncd.yaml"
    path.write_bytes(data)
    assert_check_config_refuses(path, capsys, fragment)


def test_a_utf16_config_with_a_byte_order_mark_is_read(home: Home, tmp_path: Path) -> None:
    # YAML allows UTF-16 with a BOM, and PyYAML reads it: the same config, the same result.
    path = tmp_path / "syncd.yaml"
    path.write_bytes(yaml.safe_dump(valid_doc(home)).encode("utf-16"))
    config = judge(path)
    assert isinstance(config, Config), config
    assert [ws.id for ws in config.workspaces] == ["12345"]  # its include is relative to it


def test_a_config_that_is_a_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "syncd.yaml"
    folder.mkdir()
    assert_check_config_refuses(folder, capsys, "cannot read the file: Is a directory")


def test_a_config_that_does_not_exist_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nowhere.yaml"
    assert_check_config_refuses(path, capsys, "cannot read the file: No such file or directory")


def test_an_included_directory_match_or_unreadable_file_is_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A glob that matches a file that is not YAML text: named, as the main file would be.
    main = lay_out(
        tmp_path / "etc",
        Layout({"syncd.yaml": "include: 'ws.d/*'\n", "ws.d/bad.yaml": "x: [\n"}, "", ""),
    )
    assert_check_config_refuses(
        main, capsys, "invalid YAML", named=tmp_path / "etc" / "ws.d" / "bad.yaml"
    )


def test_an_unreadable_config_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "syncd.yaml"
    path.write_text("server: {}\n")
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root: chmod 000 does not stop this process from reading")
        assert_check_config_refuses(path, capsys, "cannot read the file: Permission denied")
    finally:
        path.chmod(0o600)


# -- known bugs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "workspaces: " + "[" * 10_000 + "]" * 10_000 + "\n",
        "workspaces: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n",
        "".join("  " * i + "a:\n" for i in range(3_000)),
    ],
    ids=["flow-lists", "flow-mappings", "block-mappings"],
)
def test_deeply_nested_yaml_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    path = tmp_path / "syncd.yaml"
    path.write_text(text)
    assert_check_config_refuses(path, capsys, "invalid YAML")


@pytest.mark.parametrize(
    "text",
    [
        "server: {max_body_bytes: " + "9" * 5000 + "}\n",
        "state_dir: 2001-13-45\n",
        "state_dir: !!int abc\n",
        "state_dir: !!float abc\n",
        "state_dir: !!bool maybe\n",
        "state_dir: !!timestamp abc\n",
        "state_dir: !!set [1]\n",
        "state_dir: !!int ''\n",
    ],
    ids=["5000-digits", "month-13", "int", "float", "bool", "timestamp", "set", "empty-int"],
)
def test_yaml_values_pyyaml_cannot_construct_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    path = tmp_path / "syncd.yaml"
    path.write_text(text)
    assert_check_config_refuses(path, capsys, "invalid YAML")


def test_a_duration_too_large_for_a_float_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "syncd.yaml"
    path.write_text("defaults: {poll_interval: " + "9" * 400 + "}\n")
    assert_check_config_refuses(path, capsys, "defaults.poll_interval")


@pytest.mark.parametrize(
    "text",
    [
        'state_dir: "/var/lib/s\\ud800"\n',
        'workspaces: [{id: a, name: "\\udcff", source: {url: "https://h/x"}}]\n',
    ],
    ids=["state-dir", "workspace-name"],
)
def test_a_lone_surrogate_escape_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    path = tmp_path / "syncd.yaml"
    path.write_text(text)
    assert_check_config_refuses(path, capsys)


def test_a_secret_file_given_as_the_config_is_not_shown(
    home: Home, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err, _ = check_config(home.secret_file, capsys)
    assert code == 2 and str(home.secret_file) in err
    assert FILE_SECRET not in err, err
