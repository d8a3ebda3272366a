"""How a setting is declared: by its owner, next to the field that holds it.

A *settings group* is a frozen dataclass decorated with :func:`settings_group`. Each
field that is a config key is declared with :func:`setting` (default, help, check),
and becomes the key ``<prefix>.<field>`` (or ``<field>`` for the top-level prefix
``""``). A field that only *reads* a key owned by another group is declared with
:func:`shared`; it declares nothing. The run config (``fedkd.config``) collects the
schema from every registered group, so a key exists in exactly one place::

    @settings_group("median")
    class MedianSettings:
        trim: float = setting(0.1, "fraction trimmed at each end", within(0, 0.5))
        num_clients: int = shared("num_clients")

        def check(self) -> None:          # optional: cross-key rules of this group
            ...

``check`` methods raise :class:`ConfigError` naming the key. The key's type comes
from the field's annotation: ``bool``, ``int``, ``float``, ``str`` or
``tuple[str, ...]`` (a list of strings on the command line, comma-separated).

Kept free of heavy imports: every owner (data, privacy, fusion rules, faults,
the Prometheus exporter) imports this module to declare its keys.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

CLIENT = "client"  # the key changes what a client does: it travels in every train message
SERVER = "server"  # the key steers only the server (or the command line): clients never see it

Check = tuple[Callable[[Any], bool], str]  # (predicate, human-readable rule for error messages)


class ConfigError(ValueError):
    """A config key or value is wrong; the message names the key."""


@dataclass(frozen=True)
class Key:
    default: Any
    kind: type  # int, float, bool, str or list (a list of strings)
    help: str
    check: Callable[[Any], bool] | None = None
    rule: str = ""  # human-readable form of ``check`` for error messages
    audience: str = SERVER
    owner: str = ""  # the settings class that declares it (``module.Class``)


# --- checks -------------------------------------------------------------------------------------------

def one_of(options: Iterable[str]) -> Check:
    options = tuple(options)
    return (lambda v: v in options), f"one of {', '.join(options)}"


def within(low: float, high: float) -> Check:
    return (lambda v: low <= v <= high), f"within [{low:g}, {high:g}]"


POSITIVE: Check = (lambda v: v > 0), "> 0"
NON_NEGATIVE: Check = (lambda v: v >= 0), ">= 0"
AT_LEAST_1: Check = (lambda v: v >= 1), ">= 1"


# --- declaration --------------------------------------------------------------------------------------

_KEY = "fedkd_key"        # field metadata: the declaration
_SHARED = "fedkd_shared"  # field metadata: the full name of a key declared elsewhere


def setting(default: Any, help: str, check: Check | None = None, *, audience: str | None = None,
            key: str | None = None) -> Any:
    """Declare a config key in a settings group (a dataclass field with a default).

    audience: ``CLIENT`` if the key changes what clients do (default: the group's audience).
    key: the full key name when it is not ``<prefix>.<field>`` (kept for compatibility).
    """
    fn, rule = check if check is not None else (None, "")
    value = tuple(default) if isinstance(default, list) else default
    return dataclasses.field(default=value, metadata={_KEY: (default, help, fn, rule, audience, key)})


def shared(key: str) -> Any:
    """Read a key declared by another group; declares nothing."""
    return dataclasses.field(default=None, metadata={_SHARED: key})


@dataclass(frozen=True)
class SettingsGroup:
    cls: type
    prefix: str
    keys: dict[str, Key]              # the keys this group declares
    fields: dict[str, str]            # field name -> full key name (declared and shared)


SETTINGS_GROUPS: dict[type, SettingsGroup] = {}
# Old key prefixes still accepted, with a deprecation message: {old prefix: new prefix}
PREFIX_ALIASES: dict[str, str] = {}


def _kind(annotation: Any) -> type:
    if annotation in (bool, int, float, str):
        return annotation
    if typing.get_origin(annotation) is tuple:
        return list
    raise TypeError(f"a setting's type must be bool, int, float, str or tuple[str, ...], got {annotation!r}")


def settings_group(prefix: str, audience: str = SERVER, *, aliases: Iterable[str] = ()):
    """Class decorator: make ``cls`` a frozen dataclass and register the keys it declares.

    aliases: old prefixes of this group's keys, still accepted with a deprecation message.
    """
    def register(cls: type) -> type:
        cls = dataclass(frozen=True)(cls)
        hints = typing.get_type_hints(cls)
        keys: dict[str, Key] = {}
        names: dict[str, str] = {}
        for f in dataclasses.fields(cls):
            if _SHARED in f.metadata:
                names[f.name] = f.metadata[_SHARED]
                continue
            if _KEY not in f.metadata:
                continue  # a derived field, not a key
            default, help, fn, rule, field_audience, key = f.metadata[_KEY]
            full = key or (f"{prefix}.{f.name}" if prefix else f.name)
            keys[full] = Key(default, _kind(hints[f.name]), help, fn, rule, field_audience or audience,
                             owner=f"{cls.__module__}.{cls.__qualname__}")
            names[f.name] = full
        for other in SETTINGS_GROUPS.values():
            if other.cls.__qualname__ != cls.__qualname__ or other.cls.__module__ != cls.__module__:
                clash = set(other.keys) & set(keys)
                if clash:
                    raise ValueError(f"{cls.__qualname__} declares keys already declared by "
                                     f"{other.cls.__qualname__}: {sorted(clash)}")
        for old in aliases:
            PREFIX_ALIASES[old] = prefix
        # re-registering the same class (a module reloaded) replaces it
        for other in [c for c in SETTINGS_GROUPS if c.__qualname__ == cls.__qualname__
                      and c.__module__ == cls.__module__]:
            del SETTINGS_GROUPS[other]
        SETTINGS_GROUPS[cls] = SettingsGroup(cls, prefix, keys, names)
        return cls

    return register


def collected_keys() -> dict[str, Key]:
    """Every key declared by a registered group."""
    keys: dict[str, Key] = {}
    for group in SETTINGS_GROUPS.values():
        keys.update(group.keys)
    return keys


def build(cls: type, values: Mapping[str, Any]):
    """The typed view ``cls`` of a complete config (lists become tuples)."""
    group = SETTINGS_GROUPS[cls]
    kwargs = {}
    for name, key in group.fields.items():
        value = values[key]
        kwargs[name] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def declared_fields(obj: Any) -> dict[str, Any]:
    """The values of the keys a settings object *declares* (not the shared ones), by field name."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if _KEY in f.metadata}


def finite(value: Any) -> bool:
    return not isinstance(value, float) or math.isfinite(value)
