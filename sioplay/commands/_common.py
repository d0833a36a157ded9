"""What every command group shares: settings from the context, consoles, the error edge."""

from __future__ import annotations

import dataclasses
import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from sioplay.errors import SioplayError
from sioplay.settings import Settings

__all__ = ["CliState", "console", "err_console", "handles_errors", "print_json", "state_of"]

P = ParamSpec("P")
R = TypeVar("R")

console = Console()
err_console = Console(stderr=True)


@dataclasses.dataclass(frozen=True, slots=True)
class CliState:
    settings: Settings
    verbose: bool = False
    # The root options as given (before or after the subcommand), to rebuild `settings` when one more comes.
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    config: Path | None = None
    # `nodes` of the config file, for `cluster start`.
    nodes: int | None = None


def state_of(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState(settings=Settings.from_env())
    return root.obj


def handles_errors(command: Callable[P, R]) -> Callable[P, R]:
    """One red line on stderr and exit code 1 for sioplay's own errors; tracebacks only with --verbose."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except SioplayError as exc:
            if _verbose(args, kwargs):
                err_console.print_exception()
            if kwargs.get("as_json") is True:
                # A script that asked for JSON reads its errors as JSON too.
                sys.stderr.write(orjson.dumps({"error": str(exc), "kind": type(exc).__name__, "exit_code": 1}).decode())
                sys.stderr.write("\n")
            else:
                # Escaped: messages quote user input and commands such as "pip install 'sioplay[plot]'".
                err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=1) from None
        except KeyboardInterrupt:
            raise typer.Exit(code=130) from None

    return wrapper


def _verbose(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    for value in (*args, *kwargs.values()):
        if isinstance(value, typer.Context):
            return state_of(value).verbose
    return logging.getLogger("sioplay").isEnabledFor(logging.DEBUG)


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()
