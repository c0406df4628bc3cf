"""What does `verify` add to push-to-applied? A signed commit applied with `verify` on, against
the same signed commit applied with it off.

    python bench/verify_overhead.py [--quick]

Starts its own https git server on loopback, an SSH signing key (ssh-keygen, ed25519) and two
repositories with one history of 100 steps whose head and every later commit are signed (`git
commit -S` with gpg.format=ssh, as a developer signs). The installed `syncd serve` runs two
automatic workspaces, webhooks only: `on` with `verify` (an allowed-signers file listing the
key), `off` without. Then, 30 times (--quick: 8) after 2 untimed warm-up pushes: the same
one-step change is committed, signed, and pushed to both (untimed), and each workspace is timed
from GitHub's signed push webhook to the first `GET /api/v1/workspaces/{id}` (asked every 5 ms)
whose `last_applied_revision` is the pushed commit; the two alternate in which goes first. With
`verify`, syncd reads the commit's signature from its mirror and runs `ssh-keygen -Y` on it.
Goal: the median with `verify` at most 1.2 times the median without. Prints a markdown table;
always exits 0 (benches do not fail CI).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from common import (
    STEPS_PATH,
    Figure,
    clone_bare_repo,
    failed_row,
    figures_table,
    make_repo,
    markdown_table,
    median,
    percentile,
    spread,
    step_name,
    temp_git_server,
    workspace,
    write_step,
)
from daemon import ServeProcess
from webhook_latency import POLL_EVERY, time_webhook

from syncd.core.steps import step_file_name
from syncd.demo.gitserver import WorkTree

STEPS = 100
WARMUP = 2
GOAL_RATIO = 1.2
PRINCIPAL = "bench@example.com"


def signing_key(folder: Path) -> tuple[Path, str]:
    """An ed25519 key without a passphrase: (private key file, its allowed-signers line)."""
    folder.mkdir(parents=True, exist_ok=True)
    key = folder / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", str(key)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    public = " ".join(key.with_suffix(".pub").read_text().split()[:2])
    return key, f"{PRINCIPAL} {public}"


def sign_with(tree: WorkTree, key: Path) -> None:
    """The work tree's signing key, as a developer's `git config` says it."""
    tree.git("config", "gpg.format", "ssh")
    tree.git("config", "user.signingkey", str(key))


def signed_commit(tree: WorkTree, message: str) -> str:
    """`git commit -S` of everything changed (the demo's git turns commit.gpgSign off)."""
    tree.git("add", "-A")
    tree.git("commit", "--quiet", "-S", "--allow-empty", "-m", message)
    return tree.head()


@dataclass(frozen=True)
class Measured:
    on: list[float]  # seconds, webhook to applied with `verify`
    off: list[float]  # the same commits' content, without


def measure(pushes: int) -> Measured:
    with temp_git_server() as (server, tmp):
        key, allowed_line = signing_key(tmp / "keys")
        allowed = tmp / "allowed_signers"
        allowed.write_text(allowed_line + "\n")
        url_on, tree_on = make_repo(server, tmp, "on", STEPS)
        sign_with(tree_on, key)
        signed_commit(tree_on, "signed from here on")
        tree_on.push()
        url_off = clone_bare_repo(server, "on", "off")  # the same history, signed head
        tree_off = WorkTree(server, "off", tmp / "off-work")
        sign_with(tree_off, key)
        on = {**workspace("on", url_on, server), "verify": {"allowed_signers_file": str(allowed)}}
        off = workspace("off", url_off, server)
        with ServeProcess.start(tmp / "syncd", [on, off], server) as daemon:
            daemon.wait_ready(60)
            daemon.wait_all_applied(2, tree_on.head(), timeout=60)
            client = daemon.client()
            times: dict[str, list[float]] = {"on": [], "off": []}
            for k in range(WARMUP + pushes):
                i = (k * 37) % STEPS  # a different step each time
                path = f"{STEPS_PATH}/{step_file_name(step_name(i))}"
                pushed = {}
                for name, tree, url in (("on", tree_on, url_on), ("off", tree_off, url_off)):
                    before = tree.head()
                    write_step(tree, i, version=k + 1)
                    sha = signed_commit(tree, f"change step {i}")
                    tree.push()
                    pushed[name] = (url, sha, before)
                order = ("on", "off") if k % 2 else ("off", "on")
                for name in order:
                    url, sha, before = pushed[name]
                    seconds = time_webhook(daemon, client, url, path, sha, before, ws=name)
                    if name == "on":  # applied as verified, by the key that signed it
                        signer = client.get("/api/v1/workspaces/on").json().get("signed_by")
                        if signer != PRINCIPAL:
                            raise RuntimeError(f"applied without its signer: {signer!r}")
                    if k >= WARMUP:
                        times[name].append(seconds)
        return Measured(times["on"], times["off"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 pushes instead of 30")
    args = parser.parse_args(argv)
    pushes = 8 if args.quick else 30
    print(
        f"# verify overhead ({'quick' if args.quick else 'full'}): {pushes} signed pushes to"
        f" each of two workspaces of {STEPS} steps, `verify` on vs off, webhook to applied\n"
    )
    try:
        m = measure(pushes)
    except Exception as e:
        traceback.print_exc()
        print(markdown_table([]) + "\n" + failed_row("push to applied, verify on/off", e))
        return 0
    rows = [
        Figure(
            f"push to applied of a signed commit, `verify` on, median of {pushes}"
            " (baseline: `verify` off)",
            median(m.on),
            "s",
            median(m.off),
            at_most=GOAL_RATIO,
        ),
        Figure(
            f"push to applied, `verify` on, p90 of {pushes} (baseline: off)",
            percentile(m.on, 90),
            "s",
            percentile(m.off, 90),
        ),
    ]
    print(figures_table(rows))
    print(
        f"\nmin/median/max: verify on {spread(m.on)}, off {spread(m.off)}; the applied revision"
        f" is read every {POLL_EVERY * 1000:.0f} ms, so both include up to that much wait"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
