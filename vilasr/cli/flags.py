"""Command-line flags made from config dataclasses: one flag per field, its default and help taken
from the field, so the command line can never drift from the config it fills."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" after a flag's help, except where there is nothing to show (a required
    flag, an on/off switch that is off, an empty list)."""

    def _get_help_string(self, action):
        default = action.default
        if action.required or default is None or default is False or default == [] or default == argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def add_config_flags(parser: argparse.ArgumentParser, config_class, names: Iterable[str]) -> None:
    """Add `--field-name` for each named field of `config_class` (a dataclass)."""
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    for name in names:
        field = fields[name]
        default = _default(field)
        flag = "--" + name.replace("_", "-")
        help_text = field.metadata.get("help", name.replace("_", " "))
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        else:
            parser.add_argument(flag, type=type(default), default=default, help=help_text)


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0 (seeds, counts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def config_from_args(config_class, args: argparse.Namespace, names: Iterable[str], **more):
    """`config_class(**{name: args.name for name in names}, **more)`."""
    return config_class(**{name: getattr(args, name) for name in names}, **more)
