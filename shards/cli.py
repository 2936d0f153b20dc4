"""The `latentwatch` command.

The data layer hosts the dispatcher because it is the one layer every other layer may import. Each layer
adds its subcommands through the `latentwatch.commands` entry-point group (see pyproject.toml), so this
module never imports `pretrain` or `detect`.

Protocol for a layer: `register(subparsers)` adds its parsers, sets `handler` on each (a function taking the
parsed arguments and returning an exit status), and returns the exception classes that mean "the user's input
is wrong". The dispatcher prints such an exception as one line and exits with status 2, with no traceback.
A full disk, a file-size limit, a read-only or forbidden destination is the machine's state, not a bug:
one line and status 1. Any other exception is a bug, so it keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib.metadata import entry_points

from tqdm import tqdm

from shards.errors import environment_error_message



def register(subparsers: argparse._SubParsersAction) -> tuple[type[Exception], ...]:
    """Add `latentwatch shards ...` to the command line."""
    from shards.build_cli import add_build_command
    from shards.errors import ShardsInputError

    shards_parser = subparsers.add_parser("shards", help="build WebDataset shard sets of audio-visual clips")
    shards_commands = shards_parser.add_subparsers(dest="shards_command", required=True, metavar="COMMAND")
    add_build_command(shards_commands)
    return (ShardsInputError,)


def build_parser() -> tuple[argparse.ArgumentParser, tuple[type[Exception], ...]]:
    parser = argparse.ArgumentParser(
        prog="latentwatch",
        description="Self-supervised audio-visual representations and latent-space anomaly detectors.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    input_errors: tuple[type[Exception], ...] = ()
    for entry_point in sorted(entry_points(group="latentwatch.commands"), key=lambda e: e.name):
        input_errors += tuple(entry_point.load()(subparsers))
    return parser, input_errors


def main(argv: list[str] | None = None) -> int:
    parser, input_errors = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(args.handler(args) or 0)
    except input_errors as error:
        _print_error(str(error))
        return 2
    except BrokenPipeError:
        # The reader of our output went away (`latentwatch ... | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as error:
        message = environment_error_message(error)
        if message is None:
            raise
        _print_error(message)
        return 1
    except KeyboardInterrupt:
        print("latentwatch: interrupted", file=sys.stderr)
        return 130


def _print_error(message: str) -> None:
    close_progress_bars()
    print(f"latentwatch: error: {message}", file=sys.stderr)


def close_progress_bars() -> None:
    """Close the progress bars a failed command left open, so that its error line starts a line of its own."""
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


if __name__ == "__main__":
    sys.exit(main())
