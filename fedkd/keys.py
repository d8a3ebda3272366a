"""How one config key is described: its default, type, check and help text.

Kept apart from ``fedkd.config`` so that a fusion rule can declare its own keys
(``fedkd.fusion.registry``) without importing the whole config machinery.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

CLIENT = "client"  # the key changes what a client does: it travels in every train message
SERVER = "server"  # the key steers only the server (or the command line): clients never see it


@dataclass(frozen=True)
class Key:
    default: Any
    kind: type  # int, float, bool, str or list (a list of strings)
    help: str
    check: Callable[[Any], bool] | None = None
    rule: str = ""  # human-readable form of ``check`` for error messages
    audience: str = SERVER


def one_of(options: Iterable[str]) -> tuple[Callable[[Any], bool], str]:
    options = tuple(options)
    return (lambda v: v in options), f"one of {', '.join(options)}"


POSITIVE = (lambda v: v > 0), "> 0"
NON_NEGATIVE = (lambda v: v >= 0), ">= 0"
AT_LEAST_1 = (lambda v: v >= 1), ">= 1"
