"""The webhook endpoint's HTTP pieces that need no server: headers in, answers out."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from syncd.http import hooks
from syncd.http.hooks import _lowered, _send_receipt
from syncd.service.intake import DeliveryOutcome, Receipt
from syncd.webhooks import Lowered


def test_scope_headers_become_lower_case_latin_1_str() -> None:
    raw = [(b"X-GitHub-Event", b"push"), (b"x-note", b"caf\xe9"), (b"x-note", b"last")]
    headers = _lowered(raw)
    assert isinstance(headers, Lowered)
    assert headers == {"x-github-event": "push", "x-note": "last"}  # the last of a name wins
    assert _lowered(raw) == headers  # from the remembered names, the same
    assert _lowered([(b"x-note", b"caf\xe9")]) == {"x-note": "café"}


def test_the_remembered_header_names_stay_bounded() -> None:
    for n in range(3 * hooks._NAMES_KEPT):
        assert _lowered([(f"X-Made-Up-{n}".encode(), b"v")]) == {f"x-made-up-{n}": "v"}
    assert len(hooks._NAMES) <= hooks._NAMES_KEPT


def sent(receipt: Receipt) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        messages.append(message)

    asyncio.run(_send_receipt(send, receipt))
    return messages


def test_each_receipt_is_answered_with_its_json_and_its_length() -> None:
    answers = {
        DeliveryOutcome.PING: (200, {"ping": "ok"}),
        DeliveryOutcome.IGNORED: (200, {"ignored": True, "matched": [], "queued": []}),
        DeliveryOutcome.DUPLICATE: (200, {"duplicate": True, "matched": [], "queued": []}),
        DeliveryOutcome.UNMATCHED: (202, {"matched": [], "queued": []}),
        DeliveryOutcome.ACCEPTED: (202, {"matched": ["a", "b"], "queued": ["a"]}),
    }
    for outcome, (status, content) in answers.items():
        matched = ("a", "b") if outcome is DeliveryOutcome.ACCEPTED else ()
        queued = ("a",) if outcome is DeliveryOutcome.ACCEPTED else ()
        start, body = sent(Receipt("github", outcome, matched, queued, "d-1"))
        assert start["type"] == "http.response.start" and start["status"] == status
        assert body["type"] == "http.response.body" and json.loads(body["body"]) == content
        assert start["headers"] == [
            (b"content-length", str(len(body["body"])).encode()),
            (b"content-type", b"application/json"),
        ]


def test_each_answer_has_a_headers_list_of_its_own() -> None:
    first, again = (
        sent(Receipt("github", DeliveryOutcome.UNMATCHED)),
        sent(Receipt("github", DeliveryOutcome.UNMATCHED)),
    )
    first[0]["headers"].append((b"x-added", b"by a middleware"))
    assert again[0]["headers"] is not first[0]["headers"]
    assert (b"x-added", b"by a middleware") not in sent(
        Receipt("github", DeliveryOutcome.UNMATCHED)
    )[0]["headers"]
