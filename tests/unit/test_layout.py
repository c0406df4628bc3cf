"""The checkout layout of `syncd pull` and the export: pure, so every case is cheap."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.core.layout import (
    DISABLED,
    MAX_FILE_NAME_BYTES,
    NO_NAME,
    LayoutError,
    LeftOut,
    PulledStep,
    check_relative,
    is_managed,
    layout_files,
    left_out,
    name_parts,
    plan_files,
)
from syncd.core.model import StepContent
from syncd.core.refs import branch_problem
from syncd.core.steps import parse_step_file, render_step_file


def step(
    name: str, do: str = "done()", if_: str = "true", ws: str = "dev", **kw: object
) -> PulledStep:
    content = StepContent(if_, do, enabled=bool(kw.get("enabled", True)))
    return PulledStep(ws, str(kw.get("id", "s1")), name, content, 3, 1_700_000_000.25)


def parsed(files: dict[str, bytes]) -> dict[str, StepContent]:
    """The steps a sync would read from the layout's step files."""
    out: dict[str, StepContent] = {}
    for path, data in files.items():
        if path.endswith(".step.json"):
            name, content = parse_step_file(path, data)
            assert name not in out, f"{name!r} twice"
            out[name] = content
    return out


def test_name_parts_drop_empty_and_dot_parts_like_the_sdk() -> None:
    assert name_parts("and-done/greeting done") == ["and-done", "greeting done"]
    assert name_parts(" a / .hidden//b/ ./..") == ["a", "b"]
    assert name_parts("../../etc/passwd") == ["etc", "passwd"]
    assert name_parts("/abs/x") == ["abs", "x"]
    assert name_parts(".env") == []


def test_the_sdk_file_and_the_step_file() -> None:
    s = step("and-done/greeting done", "return { ok: `yes` };", "data.x == 1", id="42")
    files = layout_files([s])
    assert sorted(files) == [
        "export/steps/and-done__greeting__done.step.json",
        "src/steps/and-done/greeting done.mts",
    ]
    assert files["export/steps/and-done__greeting__done.step.json"] == render_step_file(
        s.name, s.content
    )
    assert files["src/steps/and-done/greeting done.mts"].decode() == (
        "/**\n"
        "  Name:       and-done/greeting done\n"
        "\n"
        "  ID:         42\n"
        "  Version:    3\n"
        "  Path:       ./src/steps/and-done/greeting done.mts\n"
        "  UpdatedAt:  2023-11-14T22:13:20.250Z\n"
        "\n"
        "  Workspace:  dev\n"
        "*/\n"
        "\n"
        "// @ts-nocheck\n"
        "\n"
        "export const match = () => (data.x == 1);\n"
        "\n"
        "export default async (data: any) => {\n"
        "return { ok: `yes` };\n"
        "}\n"
    )


def test_only_enabled_steps_with_a_name() -> None:
    files = layout_files([step("off", enabled=False), step("  "), step("on")])
    assert sorted(files) == ["export/steps/on.step.json", "src/steps/on.mts"]


def test_what_is_left_out_is_named_with_its_reason() -> None:
    steps = [step("off", enabled=False, id="s2"), step("  ", id="s3"), step("on")]
    assert left_out(steps) == [
        LeftOut("dev", "s3", "  ", NO_NAME),
        LeftOut("dev", "s2", "off", DISABLED),
    ]
    assert left_out(steps, include_disabled=True) == [LeftOut("dev", "s3", "  ", NO_NAME)]
    assert LeftOut("dev", "s2", "off", DISABLED).to_dict() == {
        "id": "s2",
        "name": "off",
        "reason": "disabled",
    }


def test_include_disabled_writes_disabled_step_files_and_no_sdk_file() -> None:
    files = layout_files([step("off", enabled=False), step("on")], include_disabled=True)
    assert sorted(files) == [
        "export/steps/off.step.json",
        "export/steps/on.step.json",
        "src/steps/on.mts",
    ]
    assert parsed(files)["off"] == StepContent("true", "done()", enabled=False)


def test_a_name_without_usable_parts_gets_only_its_step_file() -> None:
    files = layout_files([step(".env"), step("/")])
    assert sorted(parsed(files)) == [".env", "/"]
    assert not [p for p in files if p.endswith(".mts")]


def test_header_cannot_be_closed_or_split_by_a_name() -> None:
    files = layout_files([step("x */ y\nName: fake", "a /* b */ c")])
    mts = next(data for path, data in files.items() if path.endswith(".mts")).decode()
    header = mts[: mts.index("*/") + 2]
    assert header.endswith("\n*/") and "Name:       x *\\/ y\\nName: fake\n" in header
    assert header.count("\n") == 9 and header.count("\n  Name:") == 1
    assert "a /* b */ c" in mts[len(header) :]


@pytest.mark.parametrize(
    "name",
    ["../../escape", "/abs/x", "a/../../../b", "..", ".git/config", "x/.git/hooks/pre-commit",
     "..\\..\\win", "~/x", "a/./b"],
)  # fmt: skip
def test_no_name_leads_outside_the_layout(name: str) -> None:
    files = layout_files([step(name)])
    for path in files:
        check_relative(path)
        assert path.startswith(("export/steps/", "src/steps/"))
        assert ".git" not in path.split("/")
        assert path.count("/") == 2 or path.endswith(".mts")
    assert parsed(files) == {name: step(name).content}


def test_check_relative_refuses_what_escapes() -> None:
    for bad in ("/etc/x", "a/../b", "./a", "a//b", "a/\x00", ".git/x", "a/" + "x" * 256):
        with pytest.raises(LayoutError):
            check_relative(bad)


def test_nul_in_a_name_is_refused() -> None:
    with pytest.raises(LayoutError, match="NUL"):
        layout_files([step("a\x00b")])


def test_names_sharing_a_file_get_distinct_files() -> None:
    names = ["a b", "a/b", "A/B", "a//b", "x", "x.mts/y", "q", " q"]
    files = layout_files([step(n, do=n) for n in names])
    assert parsed(files) == {n: StepContent("true", n) for n in names}
    mts = [p for p in files if p.endswith(".mts")]
    assert len(mts) == len(names)
    assert len({p.casefold() for p in files}) == len(files)
    folders = {p.rsplit("/", 1)[0].casefold() for p in files}
    assert not folders & {p.casefold() for p in files}


def test_long_names_fit_in_a_file_name() -> None:
    name = "ü" * 1000
    files = layout_files([step(name), step("d/" + "e" * 400 + "/f")])
    for path in files:
        assert all(len(p.encode()) <= MAX_FILE_NAME_BYTES for p in path.split("/"))
    assert name in parsed(files)


def test_a_name_in_two_workspaces_is_refused() -> None:
    with pytest.raises(LayoutError, match=r"'greet' is in workspaces dev, ops"):
        layout_files([step("greet", ws="dev"), step("greet", ws="ops"), step("x", ws="ops")])


def test_managed_files() -> None:
    mts = layout_files([step("a/b")])["src/steps/a/b.mts"]
    assert is_managed("export/steps/anything.step.json", b"")
    assert is_managed("export/steps/deep/er.step.json", b"{}")
    assert is_managed("src/steps/a/b.mts", mts)
    assert is_managed("src/steps/a/b.mts", mts.replace(b"\n", b"\r\n"))
    assert not is_managed("src/steps/helper.mts", b"export const x = 1;\n")
    assert not is_managed("src/steps/a.mts", b"/**\n  Name: x\n*/\n  Workspace: y")
    assert not is_managed("other/x.step.json", b"{}")
    assert not is_managed("src/steps/a/b.ts", mts)


def test_plan_files_writes_changes_removes_and_leaves_the_rest() -> None:
    old = layout_files([step("keep"), step("edit", "v1"), step("gone")])
    new = layout_files([step("keep"), step("edit", "v2"), step("fresh")])
    helper = {"src/steps/helper.mts": b"export const helper = 1;\n"}
    changes = plan_files(new, old | helper)
    assert sorted(changes.written) == ["export/steps/fresh.step.json", "src/steps/fresh.mts"]
    assert sorted(changes.changed) == ["export/steps/edit.step.json", "src/steps/edit.mts"]
    assert changes.removed == ("export/steps/gone.step.json", "src/steps/gone.mts")
    assert changes.unchanged == 2
    edits = changes.edits()
    assert edits["src/steps/gone.mts"] is None and "src/steps/helper.mts" not in edits
    assert plan_files(new, new).empty


def test_plan_files_never_overwrites_a_hand_written_file() -> None:
    new = layout_files([step("helper")])
    with pytest.raises(LayoutError, match=r"src/steps/helper\.mts"):
        plan_files(new, {"src/steps/helper.mts": b"export const helper = 1;\n"})


@pytest.mark.parametrize("branch", ["promote/dev", "release-1.2", "feature/a_b", "ü"])
def test_good_branch_names(branch: str) -> None:
    assert branch_problem(branch) is None


@pytest.mark.parametrize(
    "branch",
    ["", "a..b", "a b", "-x", "x/", "x.", "x.lock", ".x", "a//b", "a@{1}", "@", "a:b", "a~1",
     "a^", "a?", "a*", "a[", "a\\b", "a\x00", "a\x7f", "HEAD", "refs/heads/x", "a/.b", "x" * 256],
)  # fmt: skip
def test_bad_branch_names(branch: str) -> None:
    assert branch_problem(branch) is not None


# -- the round trip, over generated names and bodies -----------------------------------------

_NAME_CHARS = st.sampled_from(list("ab Z09-_./\\~*`{}()$é中😀\t")) | st.characters(
    blacklist_categories=["Cs"], blacklist_characters="\x00"
)
_BODY = st.lists(
    st.sampled_from(["{", "}", "`", "${x}", "*/", "/*", "\n", "\\", '"', "'", "é", "return 1;"])
    | st.text(max_size=8),
    max_size=12,
).map("".join)
_NAME = st.text(_NAME_CHARS, min_size=1, max_size=40).filter(lambda n: bool(n.strip()))
_STEPS = st.dictionaries(_NAME, st.tuples(_BODY, _BODY, st.booleans()), min_size=1, max_size=8)


@settings(max_examples=25, deadline=None)
@given(_STEPS)
def test_round_trip_through_the_layout(generated: dict[str, tuple[str, str, bool]]) -> None:
    steps = [
        PulledStep("dev", f"id{i}", name, StepContent(if_, do, valid=valid), i, 1.0)
        for i, (name, (if_, do, valid)) in enumerate(generated.items())
    ]
    files = layout_files(steps)
    # A sync of the layout's step files gives back every step, equal in content.
    assert parsed(files) == {s.name: s.content for s in steps}
    # Every path is clean, and distinct even on a case-insensitive file system.
    for path in files:
        check_relative(path)
    assert len({p.casefold() for p in files}) == len(files)
    # Each .mts file's comment ends where the header does, and the body is intact.
    for path, data in files.items():
        assert is_managed(path, data)
        if path.endswith(".mts"):
            text = data.decode()
            assert text.index("*/") == text.index("\n*/\n\n// @ts-nocheck\n") + 1
    mts_text = b"".join(d for p, d in files.items() if p.endswith(".mts")).decode()
    for s in steps:
        if name_parts(s.name):
            assert f"export default async (data: any) => {{\n{s.content.do}\n}}\n" in mts_text
    # Pulling again changes nothing.
    again = plan_files(layout_files(steps), files)
    assert again.empty and again.unchanged == len(files)
