"""The `syncd` command. The only place that turns errors into exit codes.

Modules: parser (the command line), commands (what each does), local and client (the two
backends: this host's config and store, or a server's HTTP API), output (printing from the
JSON views), completion (shell scripts). Exit codes are listed in docs/cli.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from syncd.cli.apiclient import (
    ApiFailed,
    ApiNotFound,
    BadServer,
    ClientError,
    Forbidden,
    TokenRefused,
    Unauthorized,
    Unreachable,
    VersionMismatch,
)
from syncd.cli.commands import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE
from syncd.cli.parser import build_parser
from syncd.core.errors import ConfigError, NotFound, StateUnusable, SyncdError
from syncd.ops.logs import setup_logging

# Client mode: why the server could not be used, each with a code of its own.
EXIT_BAD_SERVER, EXIT_UNREACHABLE, EXIT_UNAUTHORIZED, EXIT_FORBIDDEN, EXIT_VERSION = 4, 5, 6, 7, 8
_CLIENT_EXITS: tuple[tuple[type[ClientError], int], ...] = (
    (BadServer, EXIT_BAD_SERVER),
    (Unreachable, EXIT_UNREACHABLE),
    (Unauthorized, EXIT_UNAUTHORIZED),
    (Forbidden, EXIT_FORBIDDEN),
    (VersionMismatch, EXIT_VERSION),
    (ApiNotFound, EXIT_USAGE),  # no such workspace or run, as in local mode
    (ApiFailed, EXIT_FAILED),
)

__all__ = [
    "EXIT_BAD_SERVER",
    "EXIT_FAILED",
    "EXIT_FORBIDDEN",
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
        return next((code for kind, code in _CLIENT_EXITS if isinstance(e, kind)), EXIT_FAILED)
    except SyncdError as e:
        print(f"syncd: {e}", file=sys.stderr)
        return EXIT_FAILED
    except TimeoutError as e:
        print(f"syncd: {e}", file=sys.stderr)
        return EXIT_TIMEOUT
    except KeyboardInterrupt:
        return 130
