"""`providers` and a workspace's `report`: which host a workspace reports to, and every refusal
naming its key (and never a token's or a key's value)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from syncd.config import Config, load_config
from syncd.core.errors import ConfigError

TOKEN = "ghp_configTestToken0123456789"
PEM = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"
ENV = {
    "GH": TOKEN,
    "GH_LINE": TOKEN + "\n",
    "GH_SPACE": "ghp_two words",
    "KEY": PEM,
    "NOT_PEM": "hunter2-secret",
}


def load(tmp_path: Path, providers: Any, **ws: Any) -> Config:
    source = {"url": "https://github.com/acme/steps.git", **ws.pop("source", {})}
    doc = {
        "state_dir": str(tmp_path / "state"),
        "providers": providers,
        "workspaces": [{"id": "prod", "name": "prod", "source": source, **ws}],
    }
    path = tmp_path / "syncd.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_config(path, ENV)


def refused(tmp_path: Path, providers: Any, **ws: Any) -> str:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, providers, **ws)
    text = str(e.value)
    assert TOKEN not in text and "hunter2" not in text and "MIIB" not in text
    return text


GITHUB = {"github": {"api_url": "https://api.github.com", "token_env": "GH"}}


def test_the_provider_is_told_from_the_url_and_statuses_are_on_by_default(tmp_path: Path) -> None:
    config = load(tmp_path, GITHUB)
    report = config.workspaces[0].report
    assert report is not None and report.provider == "github"
    # Plans on pull requests show live steps to whoever opens one: only when asked for.
    assert report.repository == "acme/steps" and report.commit_status and not report.pull_requests
    assert TOKEN in config.secret_values()  # the log scrubber hides it
    assert config.providers["github"].kind == "github"


def test_named_kinds_and_reports_turned_off(tmp_path: Path) -> None:
    providers = {
        "ghe": {"kind": "github", "api_url": "https://ghe.example/api/v3", "token_env": "GH"}
    }
    config = load(
        tmp_path,
        providers,
        source={"provider": "ghe"},
        report={"pull_requests": False},
    )
    report = config.workspaces[0].report
    assert report is not None and report.commit_status and not report.pull_requests
    both = load(tmp_path, GITHUB, report={"pull_requests": True}).workspaces[0].report
    assert both is not None and both.commit_status and both.pull_requests
    off = load(tmp_path, GITHUB, report={"commit_status": False, "pull_requests": False})
    assert off.workspaces[0].report is None


def test_no_provider_for_the_host_reports_nothing(tmp_path: Path) -> None:
    config = load(tmp_path, None, source={"url": "https://git.example.com/acme/steps.git"})
    assert config.workspaces[0].report is None and dict(config.providers) == {}


def test_a_tokens_line_end_is_dropped_and_inner_whitespace_refused(tmp_path: Path) -> None:
    lined = {"github": {"api_url": "https://api.github.com", "token_env": "GH_LINE"}}
    token = load(tmp_path, lined).providers["github"].token
    assert token is not None and token.reveal() == TOKEN
    spaced = {"github": {"api_url": "https://api.github.com", "token_env": "GH_SPACE"}}
    said = refused(tmp_path, spaced)
    assert "env GH_SPACE" in said and "whitespace" in said and "two words" not in said


def test_a_github_app(tmp_path: Path) -> None:
    app = {"id": 12345, "installation_id": 678, "private_key_env": "KEY"}
    config = load(tmp_path, {"github": {"api_url": "https://api.github.com", "app": app}})
    provider = config.providers["github"]
    assert provider.app is not None and provider.app.app_id == 12345 and provider.token is None


@pytest.mark.parametrize(
    ("providers", "ws", "said"),
    [
        (GITHUB, {"source": {"provider": "gihtub"}}, 'no provider "gihtub"'),
        ({"gh": {"api_url": "https://api.github.com", "token_env": "GH"}}, {}, "providers.gh.kind"),
        ({"github": {"api_url": "http://api.github.com", "token_env": "GH"}}, {}, "https"),
        ({"github": {"api_url": "https://x@api.github.com", "token_env": "GH"}}, {}, "credentials"),
        ({"github": {"api_url": "https://api.github.com"}}, {}, "needs token_env or token_file"),
        (
            {
                "gitlab": {
                    "api_url": "https://gl/api/v4",
                    "app": {"id": 1, "installation_id": 2, "private_key_env": "KEY"},
                }
            },
            {},
            "an App is GitHub's",
        ),
        (
            {
                "github": {
                    "api_url": "https://api.github.com",
                    "app": {"id": 1, "installation_id": 2, "private_key_env": "NOT_PEM"},
                }
            },
            {},
            "not a PEM key",
        ),
        (None, {"report": {"commit_status": True}}, "needs a provider"),
        (GITHUB, {"source": {"url": "https://github.com/steps.git"}}, "owner/name"),
    ],
)
def test_refusals_name_the_key(
    tmp_path: Path, providers: Any, ws: dict[str, Any], said: str
) -> None:
    assert said in refused(tmp_path, providers, **ws)
