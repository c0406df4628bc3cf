"""Pull request webhooks: GitHub's, GitLab's and Gitea's events read into a PullRequest, and
matched by base repository and base branch. Pure, fast; the payloads are the hosts' own
examples (tests/unit/payloads/pulls/README.md says where each comes from)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.core.refs import branch_problem, is_full_sha
from syncd.core.urls import normalize_repo_url
from syncd.webhooks import (
    PROVIDERS,
    Event,
    MalformedPayload,
    Matcher,
    PullRequest,
    Push,
    Target,
    WebhookRejected,
    match,
    parse,
)
from syncd.webhooks.providers import BY_NAME

PULLS = Path(__file__).parent / "payloads" / "pulls"
GITHUB_SHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
GITLAB_SHA = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
GITEA_SHA = "2020558fe2e34debb818a514715839cabd25e778"
GONE = object()  # `changed`: remove the field

HEADERS = {
    "github": {
        "x-github-event": "pull_request",
        "x-github-delivery": "d-github",
        "content-type": "application/json",
    },
    "gitlab": {
        "x-gitlab-event": "Merge Request Hook",
        "x-gitlab-event-uuid": "d-gitlab",
        "content-type": "application/json",
    },
    "gitea": {
        "x-gitea-event": "pull_request",
        "x-gitea-event-type": "pull_request",
        "x-gitea-delivery": "d-gitea",
        "x-gogs-event": "pull_request",
        "x-github-event": "pull_request",
        "content-type": "application/json",
    },
}
EXAMPLE = {
    "github": "github_pull_request_opened",
    "gitlab": "gitlab_merge_request_open",
    "gitea": "gitea_pull_request_opened",
}
GITHUB_REPO = (
    "https://github.com/Codertocat/Hello-World.git",
    "https://github.com/Codertocat/Hello-World",
    "git@github.com:Codertocat/Hello-World.git",
    "git://github.com/Codertocat/Hello-World.git",
)
# The merge request's target project, not the docs example's `project` (another one).
GITLAB_REPO = (
    "http://example.com/awesome_space/awesome_project.git",
    "git@example.com:awesome_space/awesome_project.git",
    "http://example.com/awesome_space/awesome_project",
)
GITEA_REPO = (
    "http://localhost:3000/test/repo.git",
    "http://localhost:3000/test/repo",
    "ssh://git@localhost:2222/test/repo.git",
)


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PULLS / f"{name}.json").read_text())
    return data


_EXAMPLES = {name: example(name) for name in (*EXAMPLE.values(), "github_pull_request_closed")}


def changed(name: str, **fields: Any) -> bytes:
    """The example `name` with fields set (a path's dots written as "__"), or removed (GONE)."""
    data = copy.deepcopy(_EXAMPLES[name])
    for path, value in fields.items():
        *parents, last = path.split("__")
        obj = data
        for key in parents:
            obj = obj[key]
        if value is GONE:
            obj.pop(last, None)
        else:
            obj[last] = value
    return json.dumps(data).encode()


def read(provider: str, body: bytes, headers: dict[str, str] | None = None) -> Event:
    return parse(provider, HEADERS[provider] if headers is None else headers, body)


# --- the hosts' own examples ------------------------------------------------------------------


@pytest.mark.parametrize("action", ["opened", "reopened", "synchronize"])
def test_github_examples(action: str) -> None:
    body = (PULLS / f"github_pull_request_{action}.json").read_bytes()
    assert read("github", body) == PullRequest(
        provider="github",
        repo_urls=GITHUB_REPO,
        base="master",
        number=2,
        head_sha=GITHUB_SHA,
        head_ref="refs/pull/2/head",
        action=action,
        delivery="d-github",
    )


def test_github_form_encoded() -> None:
    body = urlencode({"payload": changed(EXAMPLE["github"]).decode()}).encode()
    headers = {**HEADERS["github"], "content-type": "application/x-www-form-urlencoded"}
    pull = read("github", body, headers)
    assert isinstance(pull, PullRequest) and pull.number == 2


def test_gitlab_example() -> None:
    body = (PULLS / "gitlab_merge_request_open.json").read_bytes()
    assert read("gitlab", body) == PullRequest(
        provider="gitlab",
        repo_urls=GITLAB_REPO,
        base="master",
        number=1,
        head_sha=GITLAB_SHA,
        head_ref="refs/merge-requests/1/head",
        action="open",
        delivery="d-gitlab",
    )


def test_gitea_example() -> None:
    body = (PULLS / "gitea_pull_request_opened.json").read_bytes()
    assert read("gitea", body) == PullRequest(
        provider="gitea",
        repo_urls=GITEA_REPO,
        base="main",
        number=12,
        head_sha=GITEA_SHA,
        head_ref="refs/pull/12/head",
        action="opened",
        delivery="d-gitea",
    )


def test_forgejo_sends_the_same() -> None:
    headers = {
        "x-forgejo-event": "pull_request",
        "x-forgejo-delivery": "d-forgejo",
        "x-gitea-event": "pull_request",
        "x-github-event": "pull_request",
    }
    pull = read("gitea", changed(EXAMPLE["gitea"], action="synchronized"), headers)
    assert isinstance(pull, PullRequest)
    assert (pull.action, pull.delivery, pull.head_ref) == (
        "synchronized",
        "d-forgejo",
        "refs/pull/12/head",
    )


# --- which events plan ------------------------------------------------------------------------

PLANNED = {
    "github": ["opened", "reopened", "synchronize", "ready_for_review"],
    "gitea": ["opened", "reopened", "synchronized"],
}
IGNORED = {
    "github": ["closed", "edited", "labeled", "assigned", "converted_to_draft", "synchronized"],
    "gitea": ["closed", "edited", "label_updated", "assigned", "synchronize", "reviewed"],
}


@pytest.mark.parametrize("provider", ["github", "gitea"])
def test_actions_that_plan_and_actions_ignored(provider: str) -> None:
    name = EXAMPLE[provider]
    for action in PLANNED[provider]:
        pull = read(provider, changed(name, action=action))
        assert isinstance(pull, PullRequest) and pull.action == action
    for action in IGNORED[provider]:
        assert read(provider, changed(name, action=action)) is None, action
    # An ignored action is not read further: its payload may lack what a plan needs.
    assert read(provider, json.dumps({"action": "closed"}).encode()) is None


def test_github_closed_and_merged_plan_nothing() -> None:
    assert read("github", (PULLS / "github_pull_request_closed.json").read_bytes()) is None
    merged = changed(
        "github_pull_request_closed", pull_request__merged=True, pull_request__state="closed"
    )
    assert read("github", merged) is None
    # A closed pull request is not planned whatever the action says.
    assert read("github", changed(EXAMPLE["github"], pull_request__state="closed")) is None


def test_a_draft_is_planned() -> None:
    pull = read("github", changed(EXAMPLE["github"], pull_request__draft=True))
    assert isinstance(pull, PullRequest) and pull.action == "opened"
    attributes = {**_EXAMPLES[EXAMPLE["gitlab"]]["object_attributes"], "draft": True}
    assert isinstance(
        read("gitlab", changed(EXAMPLE["gitlab"], object_attributes=attributes)), PullRequest
    )


def gitlab_with(**attributes: Any) -> bytes:
    return changed(
        EXAMPLE["gitlab"],
        object_attributes={**_EXAMPLES[EXAMPLE["gitlab"]]["object_attributes"], **attributes},
    )


def test_gitlab_actions_and_states() -> None:
    pushed = "a" * 40  # GitLab's oldrev: the update brought commits
    for action in ("open", "reopen", "update"):
        pull = read("gitlab", gitlab_with(action=action, oldrev=pushed))
        assert isinstance(pull, PullRequest) and pull.action == action
    # An update without commits (a title, a label, an approval) plans nothing new.
    assert read("gitlab", gitlab_with(action="update", oldrev=None)) is None
    for action in ("close", "merge", "approved", "unapproved", "approval", "unapproval"):
        assert read("gitlab", gitlab_with(action=action)) is None, action
    for state in ("closed", "merged", "locked", None):
        assert read("gitlab", gitlab_with(action="update", state=state)) is None, state


def test_gitlab_system_hook_merge_request() -> None:
    system = {**HEADERS["gitlab"], "x-gitlab-event": "System Hook"}
    pull = read("gitlab", gitlab_with(), system)
    assert isinstance(pull, PullRequest) and pull.number == 1
    assert read("gitlab", gitlab_with(action="merge", state="merged"), system) is None


def test_gogs_pull_requests_are_ignored() -> None:
    # Gogs sends X-Gogs-Event alone, and a pull request of another shape.
    gogs = {
        "x-gogs-event": "pull_request",
        "x-gogs-delivery": "d",
        "content-type": "application/json",
    }
    assert read("gitea", b"{}", gogs) is None


# --- base repository, fork heads ---------------------------------------------------------------


def test_a_fork_is_a_pull_request_of_the_base_repository() -> None:
    data = _EXAMPLES[EXAMPLE["github"]]
    fork = {
        **data["pull_request"]["head"]["repo"],
        "clone_url": "https://github.com/someone/Hello-World.git",
        "html_url": "https://github.com/someone/Hello-World",
        "ssh_url": "git@github.com:someone/Hello-World.git",
        "git_url": "git://github.com/someone/Hello-World.git",
        "fork": True,
    }
    pull = read("github", changed(EXAMPLE["github"], pull_request__head__repo=fork))
    assert isinstance(pull, PullRequest)
    assert pull.repo_urls == GITHUB_REPO and pull.head_ref == "refs/pull/2/head"
    # A fork's repository that was deleted since: the head is still fetched from the base.
    gone = read("github", changed(EXAMPLE["github"], pull_request__head__repo=None))
    assert isinstance(gone, PullRequest) and gone.repo_urls == GITHUB_REPO


def test_the_hook_repository_stands_in_for_a_base_without_urls() -> None:
    pull = read("github", changed(EXAMPLE["github"], pull_request__base__repo=GONE))
    assert isinstance(pull, PullRequest) and pull.repo_urls == GITHUB_REPO
    target = {
        k: v for k, v in _EXAMPLES[EXAMPLE["gitlab"]]["object_attributes"].items() if k != "target"
    }
    pull = read("gitlab", changed(EXAMPLE["gitlab"], object_attributes=target))
    assert isinstance(pull, PullRequest)
    assert pull.repo_urls[0] == "http://example.com/gitlabhq/gitlab-test.git"


# --- malformed ---------------------------------------------------------------------------------

BAD_NUMBERS = ["2", 2.0, True, None, 0, -1, 2**31, 2**63, 10**30, [2]]
BAD_SHAS = [None, 7, "", "abc", GITHUB_SHA.upper(), GITHUB_SHA + "0", GITHUB_SHA[:-1] + "g"]
BAD_BRANCHES = [
    None, 3, ["main"], "", "refs/heads/main", "HEAD", "a..b", "a b", "-x", "main.lock",
    "x" * 256, "a\x00b", "feature/", "@{u}",
]  # fmt: skip
FIELDS = {
    # provider: (number path, sha path, branch path), as `changed` writes them
    "github": ("number", "pull_request__head__sha", "pull_request__base__ref"),
    "gitea": ("number", "pull_request__head__sha", "pull_request__base__ref"),
}


@pytest.mark.parametrize("provider", ["github", "gitea"])
def test_hub_malformed_payloads_name_the_field(provider: str) -> None:
    name = EXAMPLE[provider]
    number, sha, branch = FIELDS[provider]
    cases: list[tuple[str, Any]] = [
        *((number, v) for v in [*BAD_NUMBERS, GONE]),
        *((sha, v) for v in [*BAD_SHAS, GONE]),
        *((branch, v) for v in [*BAD_BRANCHES, GONE]),
        ("action", 3),
        ("action", GONE),
        ("pull_request", GONE),
    ]
    for path, value in cases:
        named = path.replace("__", ".")
        if path == "pull_request":
            named = "pull_request.base.ref"
        with pytest.raises(MalformedPayload) as e:
            read(provider, changed(name, **{path: value}))
        assert f"payload field {named} " in e.value.message, (path, value, e.value.message)
    both = changed(name, pull_request__base__repo=GONE, repository=GONE)
    with pytest.raises(MalformedPayload, match=r"pull_request\.base\.repo\.clone_url"):
        read(provider, both)


def test_gitlab_malformed_payloads_name_the_field() -> None:
    cases: list[tuple[str, Any]] = [
        *(("iid", v) for v in BAD_NUMBERS),
        *(("last_commit", {"id": v}) for v in BAD_SHAS),
        ("last_commit", None),
        *(("target_branch", v) for v in BAD_BRANCHES),
        ("action", None),
    ]
    for key, value in cases:
        named = {"last_commit": "last_commit.id"}.get(key, key)
        with pytest.raises(MalformedPayload) as e:
            read("gitlab", gitlab_with(**{key: value}))
        assert f"payload field object_attributes.{named} " in e.value.message, (key, value)
    for body in (b"{}", json.dumps({"object_attributes": "x"}).encode(), b"[]", b"\xff"):
        with pytest.raises(MalformedPayload):
            read("gitlab", body)
    nowhere = gitlab_with(target=None)
    data = json.loads(nowhere)
    del data["project"]
    with pytest.raises(MalformedPayload, match=r"object_attributes\.target\.git_http_url"):
        read("gitlab", json.dumps(data).encode())


def test_errors_do_not_echo_the_payload() -> None:
    secretish = "ghp_" + "x" * 36
    for body in (
        changed(EXAMPLE["github"], pull_request__head__sha=secretish),
        changed(EXAMPLE["github"], pull_request__base__ref=secretish + " "),
        changed(EXAMPLE["github"], number=secretish),
    ):
        with pytest.raises(MalformedPayload) as e:
            read("github", body)
        assert secretish not in e.value.message


# --- matching ----------------------------------------------------------------------------------


def targets(*forms: str, branch: str = "master", path: str = "") -> list[Target]:
    return [Target(f"w{i}", normalize_repo_url(u), branch, path) for i, u in enumerate(forms)]


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/Codertocat/Hello-World.git",  # clone
        "git@github.com:Codertocat/Hello-World.git",  # ssh, scp-like
        "ssh://git@github.com/Codertocat/Hello-World",  # ssh URL
        "https://github.com/Codertocat/Hello-World",  # web
        "HTTPS://GitHub.com/Codertocat/Hello-World/",
    ],
)
def test_a_pull_request_matches_its_base_repository_in_any_url_form(url: str) -> None:
    pull = read("github", changed(EXAMPLE["github"]))
    assert isinstance(pull, PullRequest)
    for branch in ("master", "refs/heads/master"):
        for path in ("", ".", "export/steps"):  # a folder matches too: files are unknown
            found = [Target("w", normalize_repo_url(url), branch, path)]
            assert match(pull, found) == ["w"]
            assert Matcher(found).match(pull) == ["w"]


def test_a_pull_request_matches_only_its_base_branch_and_repository() -> None:
    pull = read("github", changed(EXAMPLE["github"]))
    assert isinstance(pull, PullRequest)
    other_branch = targets(*GITHUB_REPO, branch="changes")  # the head branch: not followed
    fork = targets("https://github.com/someone/Hello-World.git")
    elsewhere = targets("https://gitlab.com/Codertocat/Hello-World.git")
    for found in (other_branch, fork, elsewhere):
        assert match(pull, found) == [] and Matcher(found).match(pull) == []
    # To another base branch: what follows master is not concerned.
    dev = read("github", changed(EXAMPLE["github"], pull_request__base__ref="dev"))
    assert isinstance(dev, PullRequest)
    assert Matcher(targets(*GITHUB_REPO)).match(dev) == []
    assert Matcher(targets(*GITHUB_REPO, branch="dev")).match(dev) == ["w0", "w1", "w2", "w3"]


@pytest.mark.parametrize("provider", ["gitlab", "gitea"])
def test_gitlab_and_gitea_pull_requests_match_their_target(provider: str) -> None:
    pull = read(provider, changed(EXAMPLE[provider]))
    assert isinstance(pull, PullRequest)
    follows = [
        Target("t", normalize_repo_url(pull.repo_urls[1]), pull.base, "deploy"),
        Target("other-branch", normalize_repo_url(pull.repo_urls[0]), "elsewhere", ""),
        Target(
            "source", normalize_repo_url("http://example.com/gitlabhq/gitlab-test"), "master", ""
        ),
    ]
    assert Matcher(follows).match(pull) == ["t"] == match(pull, follows)


def test_pushes_match_as_before() -> None:
    push = Push("github", GITHUB_REPO[:1], ("master",), frozenset({"docs/a"}))
    found = targets(GITHUB_REPO[0], path="export") + targets(GITHUB_REPO[2], path="docs")
    assert match(push, found) == ["w0"] and Matcher(found).match(push) == ["w0"]


# --- the table, the types ------------------------------------------------------------------------


def test_the_provider_table_names_pull_events() -> None:
    pulls = {name: BY_NAME[name].pull_events for name in PROVIDERS}
    assert pulls == {
        "github": ("pull_request",),
        "gitlab": ("Merge Request Hook",),
        "gitea": ("pull_request",),
        "bitbucket": (),
        "bitbucket-server": (),
        "azure-devops": (),
        "generic": (),
    }
    assert PullRequest in get_args(Event)


# --- robustness ----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=25,
)
# Values near the edges of what a pull request reader accepts.
EDGES: list[Any] = [
    2**31 - 1, 2**31, 0, "opened", "synchronize", "synchronized", "open", "update", "closed",
    "main", "refs/heads/main", GITHUB_SHA, "", None, {}, [],
]  # fmt: skip
INTERESTING: st.SearchStrategy[Any] = st.sampled_from(EDGES)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found += _paths(v, (*prefix, i))
    return found


def _replaced(name: str, path: tuple[Any, ...], value: Any) -> bytes:
    if not path:
        return json.dumps(value).encode()
    data = copy.deepcopy(_EXAMPLES[name])
    obj = data
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value
    return json.dumps(data).encode()


def mutated(name: str) -> st.SearchStrategy[bytes]:
    """The example with one field somewhere replaced by any JSON value."""
    return st.builds(
        _replaced,
        st.just(name),
        st.sampled_from(_paths(_EXAMPLES[name])),
        json_values | INTERESTING,
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), provider=st.sampled_from(sorted(HEADERS)))
def test_any_pull_request_body_is_read_or_malformed(data: st.DataObject, provider: str) -> None:
    body = data.draw(
        st.one_of(
            st.binary(max_size=100),
            json_values.map(lambda v: json.dumps(v).encode()),
            mutated(EXAMPLE[provider]),
            mutated("gitlab_merge_request_open" if provider == "gitlab" else EXAMPLE["github"]),
        )
    )
    headers = HEADERS[provider]
    if provider == "gitlab" and data.draw(st.booleans()):
        headers = {**headers, "x-gitlab-event": "System Hook"}
    try:
        event = read(provider, body, headers)
    except WebhookRejected as e:
        assert type(e) is MalformedPayload and e.message.startswith(("payload", "body"))
        return
    if isinstance(event, Push):  # a System Hook push
        return
    assert event is None or isinstance(event, PullRequest)
    if event is not None:
        assert is_full_sha(event.head_sha) and branch_problem(event.base) is None
        assert 0 < event.number < 2**31 and str(event.number) in event.head_ref
        assert event.repo_urls and all(isinstance(u, str) and u.strip() for u in event.repo_urls)
        assert Matcher(targets(*GITHUB_REPO, *GITLAB_REPO, *GITEA_REPO)).match(event) in (
            [],
            ["w0", "w1", "w2", "w3"],
            ["w4", "w5", "w6"],
            ["w7", "w8", "w9"],
        )
