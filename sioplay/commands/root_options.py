"""The options every command takes (--home, --config, --db-url, --redis-url, --cluster, -v), before or after it.

`RootGroup` is the root command's class: it gives each subcommand a copy of these options (in a
"Global options" panel of its help), so that `sioplay cluster start --home X` means
`sioplay --home X cluster start`; a command's own option of the same name wins. It also keeps the
help plain: flags show no `<bool>`, arguments are named in capitals in the usage line and the text
alike, and `sioplay --verbose true` says that a flag takes no value.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

import typer
from typer import core

from sioplay.commands._common import CliState
from sioplay.errors import SioplayError
from sioplay.log import configure_cli_logging

__all__ = ["GLOBAL_PANEL", "RootGroup", "build_state", "global_options"]

GLOBAL_PANEL = "Global options (before or after the command)"
_SETTING_OPTIONS = ("home", "db_url", "redis_url", "cluster")
_FLAG_VALUES = {"true", "false", "yes", "no", "on", "off", "1", "0"}

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="State directory (database, pids, logs); default: ~/.local/state/sioplay. \\[env: SIOPLAY_HOME]",
        show_default=False,
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Settings file; default: ./sioplay.toml or \\[tool.sioplay] in ./pyproject.toml.",
        show_default=False,
    ),
]
DbUrlOption = Annotated[
    str | None, typer.Option("--db-url", help="SQLAlchemy URL of the user database. \\[env: SIOPLAY_DB_URL]")
]
RedisUrlOption = Annotated[
    str | None, typer.Option("--redis-url", help="Redis URL; default: the embedded Redis. \\[env: SIOPLAY_REDIS_URL]")
]
ClusterOption = Annotated[
    str | None, typer.Option("--cluster", help="Cluster name, namespaces Redis channels. \\[env: SIOPLAY_CLUSTER]")
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs and tracebacks.")]


def build_state(options: dict[str, Any], config: Path | None, verbose: bool) -> CliState:
    """Settings from the config file, then SIOPLAY_* variables, then the options given."""
    from sioplay.config_file import read_config
    from sioplay.settings import Settings

    found = read_config(config)
    settings = Settings.from_env(defaults=found.settings, **options)
    return CliState(settings=settings, verbose=verbose, options=options, config=config, nodes=found.nodes)


def _template(
    home: HomeOption = None,
    config: ConfigOption = None,
    db_url: DbUrlOption = None,
    redis_url: RedisUrlOption = None,
    cluster: ClusterOption = None,
    verbose: VerboseOption = False,
) -> None:
    """The global options, as Typer builds them; only their parameters are used."""


def global_options() -> list[core.TyperOption]:
    """Copies of the global options, which act on the root's state when given after a command."""
    return [copy.copy(param) for param in _global_templates()]


@functools.cache
def _global_templates() -> tuple[core.TyperOption, ...]:
    template = typer.Typer(add_completion=False)
    template.command()(_template)
    made = []
    for param in typer.main.get_command(template).params:
        assert isinstance(param, core.TyperOption)
        param.expose_value = False
        param.callback = _apply
        param.rich_help_panel = GLOBAL_PANEL
        made.append(param)
    return tuple(made)


def _apply(ctx: Any, param: Any, value: Any) -> Any:
    if value is None or value is False:
        return value
    root = ctx.find_root()
    state = root.obj if isinstance(root.obj, CliState) else build_state({}, None, False)
    if param.name == "verbose":
        configure_cli_logging(True)
        root.obj = dataclasses.replace(state, verbose=True)
        return value
    options, config = dict(state.options), state.config
    if param.name == "config":
        config = value
    else:
        options[param.name] = value
    try:
        root.obj = build_state(options, config, state.verbose)
    except SioplayError as exc:
        raise typer.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


def _commands(command: Any) -> Iterator[Any]:
    yield command
    for child in getattr(command, "commands", {}).values():
        yield from _commands(child)


def _plain_help(command: Any) -> None:
    """No `<bool>` after a flag, and an argument named as the text names it (ROOM, not {room} and ROOM)."""
    # The help option is made on first use; made here, it gets the same treatment as the others.
    command.get_help_option(SimpleNamespace(help_option_names=["-h", "--help"]))
    params = [*command.params, *([command._help_option] if command._help_option is not None else [])]
    for param in params:
        if isinstance(param, core.TyperOption) and (param.is_flag or param.count) and param.metavar is None:
            param.metavar = ""
        elif isinstance(param, core.TyperArgument) and param.metavar is None:
            param.metavar = param.name.upper()


class RootGroup(core.TyperGroup):
    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for command in _commands(self):
            if command is not self:
                taken = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
                command.params.extend(param for param in global_options() if not taken & set(param.opts))
            _plain_help(command)

    def get_params(self, ctx: Any) -> list[Any]:
        # Typer adds the completion options after __init__.
        _plain_help(self)
        return super().get_params(ctx)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0].lower() in _FLAG_VALUES:
            raise typer.BadParameter(
                f"{args[0]!r} is not a command: flags such as --verbose take no value "
                "(write 'sioplay --verbose COMMAND', or leave the flag out)",
                ctx=ctx,
            )
        return super().resolve_command(ctx, args)
