"""The run configuration: every key, its default, its check and its help text, collected from their owners.

A config is a flat mapping of dotted keys (``knfu.beta``) to plain scalars or
string lists, so the same keys work in a TOML file (nested tables), on the
command line (``--set knfu.beta=5``) and in Flower's ``run_config``. Every
value is checked here, before any data is loaded or any model trained, and a
bad one is refused with a message that names the key.

No key is declared here: each is declared once, by the settings group of the
module that owns it (``fedkd.keys.setting``; the list of groups is in
``fedkd/settings.py`` and docs/architecture.md). This module imports the owners,
collects their keys into the schema that ``fedkd keys``, TOML, ``--set`` and
``[tool.flwr.app.config]`` use, and runs each group's ``check()``.

Only the app layer (ServerApp, ClientApp, command line) reads keys by name;
it hands the library the typed views: ``cfg.training``, ``cfg.privacy``,
``cfg.canaries``, ``cfg.server``, ``cfg.sim``, ``cfg.data``, ``cfg.faults``, …

Keys are marked client or server (``fedkd.keys``): clients receive only the
client keys, so the server's own settings (its output folder, the fusion
rule's parameters, timeouts) never travel and never change message sizes.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import tomllib
from pathlib import Path
from typing import Any, Iterable, Mapping

# The owners of the keys: importing them registers their settings groups.
import fedkd.data.settings as _data_settings
import fedkd.faults.settings as _fault_settings
import fedkd.fusion as _fusion
import fedkd.privacy.settings as _privacy_settings
import fedkd.prometheus as _prometheus
import fedkd.settings as _settings
import fedkd.wire as _wire
from fedkd.files import UnsafeInput, read_text
from fedkd.keys import CLIENT, PREFIX_ALIASES, SETTINGS_GROUPS, ConfigError, Key, build
from fedkd.settings import WEIGHT_ALGORITHMS, algorithms  # noqa: F401  (re-exported for the command line)

log = logging.getLogger(__name__)

__all__ = ["CONFIG_DIGEST_KEY", "Config", "ConfigError", "algorithms", "client_keys", "compact_run_config",
           "config_digest", "describe_keys", "load_config", "make_config",
           "parse_assignments", "read_toml", "schema"]


# The order ``fedkd keys`` and pyproject.toml list the groups in (any other group, e.g. a plug-in rule's, follows).
MAX_CONFIG_FILE_BYTES = 2**20  # a config file is a page of keys

_ORDER = (_settings.RunSettings, _data_settings.DataSettings, _data_settings.ConflictSettings,
          _settings.TrainingSettings, _wire.WireSettings, _settings.ServerSettings, _prometheus.MetricsSettings,
          _privacy_settings.PrivacySettings, _privacy_settings.CanarySettings, _fault_settings.FaultSettings,
          _settings.SimSettings)


def schema() -> dict[str, Key]:
    """Every key, collected from the registered settings groups (core and fusion rules' alike)."""
    groups = [SETTINGS_GROUPS[c] for c in _ORDER] + [g for c, g in SETTINGS_GROUPS.items() if c not in _ORDER]
    return {key: spec for group in groups for key, spec in group.keys.items()}


def client_keys() -> tuple[str, ...]:
    return tuple(k for k, spec in schema().items() if spec.audience == CLIENT)


def _coerce(key: str, value: Any, spec: Key) -> Any:
    """Turn a TOML/CLI/Flower value into the key's type, or raise ConfigError."""
    kind = spec.kind
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
                return value.lower() in ("true", "1", "yes")
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise ValueError
        if kind is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if math.isfinite(number):  # inf/nan would pass every "> 0" check and fail much later
                return number
            raise ConfigError(f"config key {key!r}: {value!r} is not a finite number")
        if kind is str:
            if not isinstance(value, str):
                raise ValueError
            return value
        if kind is list:
            if isinstance(value, str):
                return [part.strip() for part in value.split(",") if part.strip()]
            if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                return list(value)
            raise ValueError
    except ConfigError:
        raise
    except (TypeError, ValueError, OverflowError):
        pass
    name = "list of strings" if kind is list else kind.__name__
    raise ConfigError(f"config key {key!r}: expected {name}, got {value!r}")


def _normalise_key(key: str) -> str:
    return key.strip().replace("-", "_")


def flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested TOML tables -> dotted keys."""
    flat: dict[str, Any] = {}
    for k, v in table.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            flat.update(flatten(v, prefix=f"{name}."))
        else:
            flat[name] = v
    return flat


class Config(Mapping[str, Any]):
    """A complete, validated run configuration (read-only mapping of dotted keys) and its typed views."""

    def __init__(self, values: Mapping[str, Any]):
        self._values = dict(values)
        self._views: dict[type, Any] = {}

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def to_json(self) -> str:
        return json.dumps(self._values, sort_keys=True)

    def to_flower(self) -> dict[str, Any]:
        """Flower records hold scalars only: lists travel as comma-joined strings."""
        return {k: ",".join(v) if isinstance(v, list) else v for k, v in self._values.items()}

    def for_clients(self) -> dict[str, Any]:
        """The client keys only, in Flower's scalar form: what every train message carries."""
        keys = set(client_keys())
        return {k: v for k, v in self.to_flower().items() if k in keys}

    def replace(self, **changes: Any) -> "Config":
        """A copy with some keys changed (dotted keys use ``__`` for ``.``)."""
        updates = {k.replace("__", "."): v for k, v in changes.items()}
        return make_config(updates, base=self)

    # typed views for the library: each built from the keys its group declares or shares
    def view(self, cls: type):
        """The typed settings ``cls`` (a registered settings group) of this config."""
        if cls not in self._views:
            self._views[cls] = build(cls, self._values)
        return self._views[cls]

    @property
    def run(self) -> _settings.RunSettings:
        return self.view(_settings.RunSettings)

    @property
    def data(self) -> _data_settings.DataSettings:
        return self.view(_data_settings.DataSettings)

    @property
    def federation(self):
        """The :class:`~fedkd.data.federation.FederationSpec` every party builds from the dataset."""
        return self.data.federation_spec()

    @property
    def training(self) -> _settings.TrainingSettings:
        return self.view(_settings.TrainingSettings)

    @property
    def privacy(self) -> _privacy_settings.PrivacySettings:
        return self.view(_privacy_settings.PrivacySettings)

    @property
    def canaries(self) -> _privacy_settings.CanarySettings:
        return self.view(_privacy_settings.CanarySettings)

    @property
    def server(self) -> _settings.ServerSettings:
        return self.view(_settings.ServerSettings)

    @property
    def sim(self) -> _settings.SimSettings:
        return self.view(_settings.SimSettings)

    @property
    def conflict(self) -> _data_settings.ConflictSettings:
        return self.view(_data_settings.ConflictSettings)

    @property
    def faults(self) -> _fault_settings.FaultSettings:
        return self.view(_fault_settings.FaultSettings)

    @property
    def metrics(self) -> _prometheus.MetricsSettings:
        return self.view(_prometheus.MetricsSettings)

    @property
    def wire(self):
        """The :class:`~fedkd.wire.WireFormat` soft labels and targets travel in."""
        return self.view(_wire.WireSettings).format

    @property
    def fusion_rule(self) -> _fusion.FusionRule | None:
        """The registered fusion rule of ``algorithm`` (None for fedavg)."""
        return _fusion.FUSION_RULES.get(self._values["algorithm"])

    @property
    def fusion(self) -> Any:
        """The typed settings of the run's fusion rule (None when it has none, or for fedavg)."""
        rule = self.fusion_rule
        return None if rule is None or rule.settings is None else self.view(rule.settings)


_warned_aliases: set[str] = set()


def _resolve_alias(key: str, keys: Mapping[str, Key]) -> str:
    """An old prefix (``attack.kind``) -> its new name (``fault.kind``), with a deprecation message once."""
    prefix, dot, rest = key.partition(".")
    if dot and prefix in PREFIX_ALIASES and key not in keys:
        new = f"{PREFIX_ALIASES[prefix]}.{rest}"
        if new in keys:
            if key not in _warned_aliases:
                _warned_aliases.add(key)
                log.warning("config key %r is deprecated: it is now %r (the old name is accepted for one "
                            "release)", key, new)
            return new
    return key


def make_config(overrides: Mapping[str, Any] | None = None, base: Mapping[str, Any] | None = None,
                *, known_only: bool = False) -> Config:
    """Defaults, then ``base``, then ``overrides``; every key and value checked.

    known_only: skip keys this process does not know (a client ignores a server-side rule's keys).
    """
    keys = schema()
    values = {k: spec.default for k, spec in keys.items()}
    for source in (base or {}, overrides or {}):
        for raw_key, raw_value in source.items():
            key = _resolve_alias(_normalise_key(raw_key), keys)
            if key not in keys:
                if known_only:
                    continue
                close = [k for k in keys if k.split(".")[-1] == key.split(".")[-1]]
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"unknown config key {raw_key!r}{hint}; run `fedkd keys` to list them")
            values[key] = _coerce(key, raw_value, keys[key])
    for key, spec in keys.items():
        if spec.check is not None and not spec.check(values[key]):
            raise ConfigError(f"config key {key!r}: {values[key]!r} is not allowed; expected {spec.rule}")
    cfg = Config(values)
    for group in list(SETTINGS_GROUPS.values()):  # each group's cross-key rules, by its owner
        if hasattr(group.cls, "check"):
            cfg.view(group.cls).check()
    if cfg.fusion_rule is not None:
        cfg.fusion_rule.check(cfg.fusion)
    return cfg


def parse_assignments(assignments: Iterable[str]) -> dict[str, str]:
    """``["rounds=3", "knfu.beta=5"]`` -> dict; a malformed item names itself."""
    out: dict[str, str] = {}
    for item in assignments:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML config file as dotted keys; a missing or broken file is a ConfigError naming it."""
    path = Path(path)
    try:
        text = read_text(path, MAX_CONFIG_FILE_BYTES, "config file")  # no FIFO, device or sparse giant
        return flatten(tomllib.loads(text))
    except UnsafeInput as exc:
        raise ConfigError(str(exc)) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} nests tables or arrays too deeply") from None


def load_config(path: str | Path | None = None, assignments: Iterable[str] = ()) -> Config:
    """Read an optional TOML file, apply ``KEY=VALUE`` overrides, validate."""
    base = read_toml(path) if path is not None else {}
    return make_config(parse_assignments(assignments), base=base)


def describe_keys() -> str:
    """A table of every key, its default and its help (for ``fedkd keys``)."""
    lines = []
    for key, spec in schema().items():
        default = ",".join(spec.default) if isinstance(spec.default, list) else spec.default
        lines.append(f"{key:28s} {str(default):16s} {spec.help}")
    return "\n".join(lines)


# --- what travels to clients: the client keys that differ from the defaults, and a digest

CONFIG_DIGEST_KEY = "_config_digest"


def compact_run_config(client_config: dict) -> dict:
    """The client keys that differ from fedkd's defaults, plus a digest of the resolved client config.

    Every train message carries the run config; sending all keys cost more than compact soft
    labels themselves. The client rebuilds the full config from its own defaults
    (``make_config``) and :func:`parse_train_message` checks the digest, so a node whose fedkd has
    other keys or defaults (another version) fails loudly instead of running a different experiment.
    """
    defaults = make_config({}).for_clients()
    compact = {k: v for k, v in client_config.items() if k not in defaults or defaults[k] != v}
    compact[CONFIG_DIGEST_KEY] = config_digest(compact)
    return compact


def config_digest(run_config: dict) -> str:
    """Short hash of the client config that ``run_config`` resolves to on this node."""
    resolved = make_config({k: v for k, v in run_config.items() if k != CONFIG_DIGEST_KEY}).for_clients()
    return hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:16]
