"""The parsed-steps cache: one read and parse per blob of a remote, bounded, never wrong."""

from __future__ import annotations

import json
import threading
import time

import pytest

from syncd.core.errors import StepFileError
from syncd.core.model import Step, StepContent
from syncd.sync.parsed_steps import ParsedSteps, entry_cost, listing_cost


def step_file(name: str, do: str = "x()") -> bytes:
    return json.dumps({"name": name, "content": {"if": "true", "do": do}}).encode()


def cost(name: str, do: str = "x()") -> int:
    return entry_cost(name, StepContent(if_="true", do=do))


class Blobs:
    """Blobs by id, counting reads."""

    def __init__(self, **blobs: bytes) -> None:
        self.blobs = blobs
        self.reads: list[str] = []

    def __call__(self, blob: str) -> bytes:
        self.reads.append(blob)
        return self.blobs[blob]


def test_a_blob_is_read_and_parsed_once_per_remote() -> None:
    cache, read = ParsedSteps(), Blobs(b1=step_file("greet"))
    first = cache.parse("remote-a", "steps/greet.step.json", "b1", read)
    again = cache.parse("remote-a", "other/place.step.json", "b1", read)
    assert read.reads == ["b1"]
    assert (first.name, first.content.do, first.path, first.blob) == (
        "greet",
        "x()",
        "steps/greet.step.json",
        "b1",
    )
    # The same bytes under another path: the step carries the path it was found at.
    assert again.path == "other/place.step.json" and again.content == first.content


def test_another_remote_reads_its_own_blob() -> None:
    cache, read = ParsedSteps(), Blobs(b1=step_file("greet"))
    cache.parse("remote-a", "a.step.json", "b1", read)
    cache.parse("remote-b", "a.step.json", "b1", read)
    assert read.reads == ["b1", "b1"]


def test_a_bad_file_is_refused_every_time_with_its_own_path() -> None:
    cache, read = ParsedSteps(), Blobs(bad=b"{not json")
    for path in ("one.step.json", "two.step.json"):
        with pytest.raises(StepFileError, match=path):
            cache.parse("remote-a", path, "bad", read)
    assert read.reads == ["bad", "bad"] and len(cache) == 0


def test_the_least_recently_used_go_first_past_the_byte_bound() -> None:
    files = {f"b{i}": step_file(f"s{i}") for i in range(4)}
    size = cost("s0")
    cache, read = ParsedSteps(max_bytes=3 * size), Blobs(**files)
    for blob in ("b0", "b1", "b2"):
        cache.parse("r", "p", blob, read)
    cache.parse("r", "p", "b0", read)  # b0 is now the most recently used
    cache.parse("r", "p", "b3", read)  # over the bound: b1 goes
    read.reads.clear()
    for blob in ("b0", "b2", "b3", "b1"):
        cache.parse("r", "p", blob, read)
    assert read.reads == ["b1"] and len(cache) == 3


def test_a_file_larger_than_the_whole_bound_is_parsed_but_not_kept() -> None:
    cache, read = ParsedSteps(max_bytes=10), Blobs(b=step_file("big"))
    assert cache.parse("r", "p", "b", read).name == "big"
    assert len(cache) == 0


def test_wide_characters_count_as_python_keeps_them() -> None:
    """A step whose text holds an emoji costs four bytes a character, not its UTF-8 length."""
    wide = "x" * 10_000 + "\U0001f600"
    assert cost("s", wide) > 4 * len(wide) > 3 * len(step_file("s", wide))


def test_threads_at_once_get_the_same_steps() -> None:
    files = {f"b{i}": step_file(f"s{i}", do=f"do({i})") for i in range(200)}
    cache, read = ParsedSteps(max_bytes=50 * cost("s0", "do(0)")), Blobs(**files)
    wrong: list[str] = []

    def reader(offset: int) -> None:
        for k in range(1_000):
            i = (k * 7 + offset) % 200
            step = cache.parse("r", f"p{i}", f"b{i}", read)
            if (step.name, step.content.do, step.path) != (f"s{i}", f"do({i})", f"p{i}"):
                wrong.append(step.name)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not wrong and not any(t.is_alive() for t in threads)
    assert len(cache) <= 50


def step_at(name: str, path: str) -> Step:
    return Step(name, StepContent(if_="true", do="x()"), path, f"blob-{name}")


def test_a_listing_is_kept_by_remote_commit_and_folder() -> None:
    cache = ParsedSteps()
    steps = (step_at("a", "s/a.step.json"), step_at("b", "s/b.step.json"))
    cache.keep_listing("remote-a", "c1", "s", steps)
    assert cache.listing("remote-a", "c1", "s") == steps
    # Another remote, commit or folder has a listing of its own.
    assert cache.listing("remote-b", "c1", "s") is None
    assert cache.listing("remote-a", "c2", "s") is None
    assert cache.listing("remote-a", "c1", "t") is None


def test_listings_are_bounded_by_their_bytes_least_recently_used_first() -> None:
    two = (step_at("a", "a.step.json"), step_at("b", "b.step.json"))
    cache = ParsedSteps(max_listed_bytes=listing_cost(two, 10**9) * 2)
    cache.keep_listing("r", "c1", "s", two)
    cache.keep_listing("r", "c2", "s", two)
    assert cache.listing("r", "c1", "s") == two  # c1 is now the most recently used
    cache.keep_listing("r", "c3", "s", two)
    assert cache.listing("r", "c2", "s") is None
    assert cache.listing("r", "c1", "s") == two and cache.listing("r", "c3", "s") == two
    # A listing longer than the bound is not kept, and evicts nothing.
    cache.keep_listing("r", "c4", "s", two + two + two)
    assert cache.listing("r", "c4", "s") is None and cache.listing("r", "c1", "s") == two


def test_a_second_reader_of_a_listing_waits_for_the_first() -> None:
    """Siblings that start together: the second waits while the first reads, then finds its
    listing; a reading of another listing does not wait."""
    cache = ParsedSteps()
    steps = (step_at("a", "s/a.step.json"),)
    inside, found = threading.Event(), []

    def first() -> None:
        with cache.reading("r", "c1", "s") as leads:
            assert leads
            inside.set()
            time.sleep(0.2)
            cache.keep_listing("r", "c1", "s", steps)

    def second() -> None:
        with cache.reading("r", "c1", "s") as leads:
            found.append((leads, cache.listing("r", "c1", "s")))

    one = threading.Thread(target=first)
    one.start()
    assert inside.wait(5)
    with cache.reading("r", "c2", "s") as leads:  # another commit: not held up
        assert leads
    two = threading.Thread(target=second)
    two.start()
    one.join(5)
    two.join(5)
    assert found == [(False, steps)]


def test_when_the_first_reader_keeps_nothing_the_others_read_at_once() -> None:
    """A first reading that keeps no listing (a bad file): the readers that waited for it go
    on together, not one after another."""
    cache = ParsedSteps()
    inside, waiting, went = threading.Event(), threading.Barrier(3, timeout=5), []

    def first() -> None:
        with cache.reading("r", "c1", "s"):
            inside.set()
            time.sleep(0.2)

    def waiter() -> None:
        with cache.reading("r", "c1", "s") as leads:
            went.append(leads)
            waiting.wait()  # both waiters inside at once, or the barrier breaks

    one = threading.Thread(target=first)
    one.start()
    assert inside.wait(5)
    others = [threading.Thread(target=waiter) for _ in range(2)]
    for thread in others:
        thread.start()
    waiting.wait()
    for thread in [one, *others]:
        thread.join(5)
    assert went == [False, False]
