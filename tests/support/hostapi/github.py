"""A fake GitHub REST API, validated against GitHub's own description (specs/github.json), that
keeps statuses, comments and pull heads, takes tokens, and plays a GitHub App: it checks the
App's JWT with the App's public key and hands out installation tokens whose expiry the test
sets. Its answers start from the description's own examples.
"""

from __future__ import annotations

import copy
import secrets
from datetime import UTC, datetime
from typing import Any

import jwt
import trustme

from tests.support.hostapi.server import FakeHost, Reply
from tests.support.hostapi.validate import Checked, load, openapi3

DOCS = "https://docs.github.com/rest"


def _example(doc: dict[str, Any], path: str, method: str, status: str) -> Any:
    content = doc["paths"][path][method]["responses"][status]["content"]["application/json"]
    return next(iter(content["examples"].values()))["value"]


class FakeGitHub(FakeHost):
    required_headers = ("Accept", "X-GitHub-Api-Version", "User-Agent", "Authorization")

    def __init__(self, ca: trustme.CA) -> None:
        doc = load("github.json")
        super().__init__(ca, openapi3(doc))
        self._examples = {
            "status": _example(doc, "/repos/{owner}/{repo}/statuses/{sha}", "post", "201"),
            "pull": _example(doc, "/repos/{owner}/{repo}/pulls/{pull_number}", "get", "200"),
            "comment": _example(
                doc, "/repos/{owner}/{repo}/issues/{issue_number}/comments", "post", "201"
            ),
            "token": _example(
                doc, "/app/installations/{installation_id}/access_tokens", "post", "201"
            ),
        }
        self.statuses: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.comments: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self.pulls: dict[tuple[str, int], str] = {}
        self._next_id = 1000
        # The GitHub App.
        self.app_id = 0
        self.installation_id = 0
        self.app_public_key = ""
        self.token_lifetime = 3600.0  # seconds an installation token lasts (GitHub: one hour)
        self.installation_tokens: dict[str, float] = {}  # token -> expires_at (epoch)
        self.tokens_issued = 0

    # Test setup.

    def set_pull_head(self, repo: str, number: int, sha: str) -> None:
        with self._lock:
            self.pulls[(repo, number)] = sha

    def add_comments(self, repo: str, issue: int, bodies: list[str]) -> None:
        with self._lock:
            for body in bodies:
                self._add_comment(repo, issue, body)

    def install_app(self, app_id: int, installation_id: int, public_key_pem: str) -> None:
        self.app_id, self.installation_id, self.app_public_key = (
            app_id,
            installation_id,
            public_key_pem,
        )

    def revoke_installation_tokens(self) -> None:
        with self._lock:
            self.installation_tokens.clear()

    # The host.

    def _refusal(self, status: int, message: str) -> Reply:
        return Reply(status, {"message": message, "documentation_url": DOCS, "status": str(status)})

    def auth(self, headers: dict[str, str], checked: Checked) -> Reply | None:
        lowered = {k.lower(): v for k, v in headers.items()}
        scheme, _, credential = lowered.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credential:
            return self._refusal(401, "Requires authentication")
        assert checked.operation is not None
        if checked.operation.id == "apps/create-installation-access-token":
            return self._check_jwt(credential, checked)
        if credential in self.tokens:
            return None
        expires_at = self.installation_tokens.get(credential)
        if expires_at is not None and expires_at > self.clock():
            return None
        return self._refusal(401, "Bad credentials")

    def _check_jwt(self, token: str, checked: Checked) -> Reply | None:
        if not self.app_public_key:
            return self._refusal(401, "A JSON web token could not be decoded")
        try:
            # Times are checked against the fake's clock below, which a test shares with the
            # client, not against the wall clock.
            claims = jwt.decode(
                token,
                self.app_public_key,
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_iat": False, "require": ["iat", "exp"]},
            )
        except jwt.PyJWTError as e:
            return self._refusal(401, f"A JSON web token could not be decoded ({e})")
        now = self.clock()
        if str(claims.get("iss")) != str(self.app_id):
            return self._refusal(401, "'Issuer' claim ('iss') must be an Integer")
        if not (claims["iat"] <= now + 60 and now < claims["exp"] <= now + 600 + 60):
            return self._refusal(
                401, "'Expiration time' claim ('exp') is too far in the future or in the past"
            )
        if checked.path.get("installation_id") != self.installation_id:
            return self._refusal(404, "Not Found")
        return None

    def _add_comment(self, repo: str, issue: int, body: str) -> dict[str, Any]:
        self._next_id += 1
        comment: dict[str, Any] = copy.deepcopy(self._examples["comment"])
        comment.update(id=self._next_id, body=body)
        self.comments.setdefault((repo, issue), []).append(comment)
        return comment

    def route(self, checked: Checked) -> Reply:
        assert checked.operation is not None
        op, p, body = checked.operation.id, checked.path, checked.body
        repo = f"{p.get('owner')}/{p.get('repo')}"
        if op == "repos/create-commit-status":
            status = copy.deepcopy(self._examples["status"])
            status.update(body)
            status["state"] = body["state"]
            self.statuses.setdefault((repo, p["sha"]), []).append(status)
            return Reply(201, status)
        if op == "pulls/get":
            sha = self.pulls.get((repo, p["pull_number"]))
            if sha is None:
                return self._refusal(404, "Not Found")
            pull = copy.deepcopy(self._examples["pull"])
            pull["number"] = p["pull_number"]
            pull["head"]["sha"] = sha
            return Reply(200, pull)
        if op == "issues/list-comments":
            per_page = int(checked.query.get("per_page", 30))
            page = int(checked.query.get("page", 1))
            found = self.comments.get((repo, p["issue_number"]), [])
            return Reply(200, found[(page - 1) * per_page : page * per_page])
        if op == "issues/create-comment":
            return Reply(201, self._add_comment(repo, p["issue_number"], body["body"]))
        if op == "issues/update-comment":
            for comments in self.comments.values():
                for comment in comments:
                    if comment["id"] == p["comment_id"]:
                        comment["body"] = body["body"]
                        return Reply(200, comment)
            return self._refusal(404, "Not Found")
        if op == "apps/create-installation-access-token":
            token = "ghs_" + secrets.token_hex(18)
            expires_at = self.clock() + self.token_lifetime
            self.installation_tokens[token] = expires_at
            self.tokens_issued += 1
            answer = copy.deepcopy(self._examples["token"])
            answer["token"] = token
            answer["expires_at"] = datetime.fromtimestamp(expires_at, UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
            return Reply(201, answer)
        return self._refusal(404, "Not Found")
