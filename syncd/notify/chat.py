"""Chat and webhook targets (Slack, Microsoft Teams, Discord, a JSON webhook, ...): one URL each,
sent to through apprise, which knows how each service wants its message.

A target's URL usually holds the token that lets anyone post there, so it is handled as a
secret: nothing here puts it, or anything apprise says about it, into an error or a log line.
apprise's own logger can quote URLs, so `syncd.logs` keeps it quiet.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from syncd.core.errors import SyncdError

if TYPE_CHECKING:
    import apprise


class TargetFailed(SyncdError):
    """The target's service did not take the message (its reason may quote the URL: not kept)."""


def _asset() -> apprise.AppriseAsset:
    import apprise  # imported when a target is configured: it takes a while to load

    # apprise's log lines, and urllib3's under it, can quote a URL or its path, token and all,
    # past the scrubber's list: syncd logs each target's result itself, by the target's name.
    for quoting in ("apprise", "urllib3"):
        logging.getLogger(quoting).setLevel(logging.CRITICAL + 1)
    # No files under $HOME: some services keep tokens they obtain in apprise's persistent store.
    return apprise.AppriseAsset(storage_mode="memory")


def url_problem(url: str) -> str | None:
    """Why no message can be sent to `url`, in words that never quote it; None when one can."""
    if not url.strip():
        return "the URL is empty"
    if "://" not in url:
        return "not a URL (expected scheme://..., e.g. slack://, msteams://, json://)"
    import apprise

    plugin = apprise.Apprise.instantiate(url, asset=_asset())
    if plugin is None:
        scheme = url.split("://", 1)[0]
        known = scheme.isascii() and scheme.isalnum() and len(scheme) <= 16
        what = f"a {scheme}:// URL" if known else "this URL"
        return f"apprise cannot send to {what} (unknown service, or a part is missing or wrong)"
    return None


def send(url: str, title: str, body: str, *, failure: bool) -> None:
    """Post one message; raises TargetFailed when the service did not take it."""
    import apprise

    client = apprise.Apprise(asset=_asset())
    if not client.add(url):
        raise TargetFailed("the target's URL is not one apprise can send to")
    kind = apprise.NotifyType.FAILURE if failure else apprise.NotifyType.SUCCESS
    if not client.notify(body=body, title=title, notify_type=kind):
        raise TargetFailed("the target did not accept the message (refused or unreachable)")
