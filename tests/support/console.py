"""Signing in to the console as a browser does, for the tests that drive it over HTTP."""

from __future__ import annotations

import re

import httpx

from tests.support.configs import API_TOKEN

# What a browser's Fetch Metadata says of a form posted from the console's own page.
SAME_ORIGIN = {"sec-fetch-site": "same-origin"}


def csrf_of(html: str) -> str:
    """The CSRF token of a console page's form."""
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def sign_in(client: httpx.Client, token: str = API_TOKEN) -> str:
    """Sign `client` in with `token` (Fetch Metadata included); the session's CSRF token."""
    form = client.get("/ui/login")
    assert form.status_code == 200, form.text
    answer = client.post(
        "/ui/login", data={"token": token, "csrf": csrf_of(form.text)}, headers=SAME_ORIGIN
    )
    assert answer.status_code == 303, answer.text
    page = client.get("/ui/", follow_redirects=False)
    assert page.status_code == 200
    return csrf_of(page.text)
