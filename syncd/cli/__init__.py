"""The `syncd` command. The only place that turns errors into exit codes.

Modules: parser (the command line), commands (what each does), local and client (the two
backends: this host's config and store, or a server's HTTP API), output (printing from the
JSON views), completion (shell scripts), pull (`syncd pull`), apiclient with transport and
apierrors (the client of the HTTP API), options (token, server and limits, the exit codes,
listed in docs/cli.md).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from syncd.cli.apierrors import ClientError, TokenRefused
from syncd.cli.options import (
    EXIT_BAD_SERVER,
    EXIT_FAILED,
    EXIT_FORBIDDEN,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_UNAUTHORIZED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    EXIT_VERSION,
    client_exit,
)
from syncd.cli.parser import build_parser
from syncd.core.errors import ConfigError, NotFound, StateUnusable, SyncdError
from syncd.ops.logs import setup_logging

__all__ = [
    "EXIT_BAD_SERVER",
    "EXIT_FAILED",
    "EXIT_FORBIDDEN",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_UNAUTHORIZED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "EXIT_VERSION",
    "_parser",
    "main",
]


def _parser() -> argparse.ArgumentParser:
    return build_parser()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    handler: Callable[..., int] = args.handler
    if args.command not in ("serve", "demo"):  # those set up logging of their own
        # Warnings of in-process work, on stderr as logfmt, through the secret scrubber.
        setup_logging("text", "warning")
    try:
        return handler(args)
    except TokenRefused as e:  # one line: where the token came from and what is wrong with it
        print(f"syncd: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as e:
        print(f"syncd: config refused:\n{e}", file=sys.stderr)
        return EXIT_USAGE
    except (NotFound, StateUnusable) as e:
        print(f"syncd: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ClientError as e:
        print(f"syncd: {e}", file=sys.stderr)
        return client_exit(e)
    except SyncdError as e:
        print(f"syncd: {e}", file=sys.stderr)
        return EXIT_FAILED
    except TimeoutError as e:
        print(f"syncd: {e}", file=sys.stderr)
        return EXIT_TIMEOUT
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
