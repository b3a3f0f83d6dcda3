"""Configuration as small dataclasses, and the one way every command makes its flags from them.

A field made with `option(default, help=...)` is the flag `--<name-with-dashes>`: its type, default, choices
and help come from the field (argparse expands %(default)s in the help), so a default is written once, beside
the code that uses it. Fields made otherwise are set from code, never from the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import MISSING, field

_TYPES = {"int": int, "float": float, "str": str}


def option(default=MISSING, help: str | None = None, choices=None):
    """A dataclass field that commands offer as a flag. No default: a required flag."""
    return field(default=default, metadata={"help": help or "", "choices": choices})


def flag_fields(cls, only: list[str] | None = None) -> list[dataclasses.Field]:
    fields = [f for f in dataclasses.fields(cls) if "help" in f.metadata]
    if only is not None:
        by_name = {f.name: f for f in fields}
        fields = [by_name[name] for name in only]
    return fields


def add_flags(parser: argparse.ArgumentParser, cls, only: list[str] | None = None) -> None:
    """A flag on `parser` for each option of dataclass `cls` (or the options named in `only`, in that order)."""
    for f in flag_fields(cls, only):
        flag, spec = "--" + f.name.replace("_", "-"), dict(f.metadata)
        required = f.default is MISSING
        kwargs = {"help": spec["help"], "default": None if required else f.default}
        if f.type == "bool":   # --name sets it; one true by default also gets --no-name
            kwargs["action"] = argparse.BooleanOptionalAction if f.default else "store_true"
        else:
            kwargs |= {"type": _TYPES.get(str(f.type).split(" | ")[0], str), "choices": spec["choices"],
                       "required": required}
        parser.add_argument(flag, **kwargs)


def from_flags(cls, args: argparse.Namespace, **given):
    """`cls` from the parsed flags of its options, plus fields given from code."""
    return cls(**{f.name: getattr(args, f.name) for f in flag_fields(cls)}, **given)
