"""A fedkd config as Flower's ``--run-config`` string, and the app's own config table.

``flwr run . <connection> --run-config "k=v ..."`` is how a deployment gets its
config. Flower parses each ``k=v`` pair as one line of TOML, so strings need
quotes and booleans are ``true``/``false``; lists (``models``) travel as one
comma-joined string. The SuperLink refuses a key that is not in the app's
``[tool.flwr.app.config]`` table of ``pyproject.toml``: that table must list
every fedkd key (``python -m fedkd.deploy.run_config --write pyproject.toml`` regenerates it).

Only the ServerApp reads the run config; it sends the resolved config to every
client inside each train message, so SuperNode hosts never need it.
"""
from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any, Mapping

from fedkd.config import ConfigError, flatten, schema


def toml_value(key: str, value: Any) -> str:
    """One value in the TOML form Flower's run-config parser expects."""
    if isinstance(value, list):
        value = ",".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # Flower splits on ``k=v`` with a regex that ends a quoted value at the next quote.
        if '"' in value or "\\" in value or "\n" in value:
            raise ConfigError(f"config key {key!r}: {value!r} cannot travel in Flower's run config "
                              "(no quotes, backslashes or newlines)")
        return json.dumps(value)
    raise ConfigError(f"config key {key!r}: {type(value).__name__} cannot travel in Flower's run config")


def app_config_keys(app_dir: str | Path) -> dict[str, Any]:
    """The flattened ``[tool.flwr.app.config]`` table of an app's ``pyproject.toml``."""
    pyproject = Path(app_dir) / "pyproject.toml"
    if not pyproject.is_file():
        raise ConfigError(f"{app_dir} is not a Flower app: {pyproject} not found")
    try:
        data = tomllib.loads(pyproject.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{pyproject} is not valid TOML: {exc}") from None
    app = data.get("tool", {}).get("flwr", {}).get("app")
    if app is None:
        raise ConfigError(f"{pyproject} has no [tool.flwr.app] table, so Flower cannot run it")
    return flatten(app.get("config", {}))


def run_config_string(cfg: Mapping[str, Any], app_keys: Mapping[str, Any] | None = None) -> str:
    """``k=v`` pairs for ``flwr run --run-config``.

    With ``app_keys`` (from :func:`app_config_keys`), a key the app does not
    declare is left out when it has fedkd's default (the ServerApp fills it in)
    and refused otherwise, since the SuperLink would reject the whole run.
    """
    pairs = []
    missing = []
    for key, value in cfg.items():
        if app_keys is not None and key not in app_keys:
            if key in schema() and value == schema()[key].default:
                continue
            missing.append(key)
            continue
        pairs.append(f"{key}={toml_value(key, value)}")
    if missing:
        raise ConfigError(f"the app's pyproject.toml [tool.flwr.app.config] lacks {', '.join(missing)}, so "
                          "Flower would refuse the run; add them (`python -m fedkd.deploy.run_config` prints "
                          "the whole table)")
    return " ".join(pairs)


TABLE_HEADER = "[tool.flwr.app.config]"
TABLE_NOTE = ("# The SuperLink refuses a --run-config key missing here, so this lists every key of `fedkd keys`\n"
              "# with its default; `python -m fedkd.deploy.run_config --write pyproject.toml` regenerates it.\n")


def app_config_table() -> str:
    """Every fedkd key with its default, as the body of ``[tool.flwr.app.config]``."""
    return "\n".join(f"{key} = {toml_value(key, spec.default)}" for key, spec in schema().items())


def rewrite_app_config_table(pyproject: Path) -> None:
    """Replace the ``[tool.flwr.app.config]`` table of a pyproject.toml (and nothing else) by the full one."""
    lines = pyproject.read_text().splitlines(keepends=True)
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == TABLE_HEADER)
    except StopIteration:
        raise ConfigError(f"{pyproject} has no {TABLE_HEADER} table") from None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    while end > start + 1 and not lines[end - 1].strip():  # keep the blank lines before the next table
        end -= 1
    table = f"{TABLE_HEADER}\n{TABLE_NOTE}{app_config_table()}\n"
    pyproject.write_text("".join(lines[:start]) + table + "".join(lines[end:]))


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--write"] and len(sys.argv) == 3:
        rewrite_app_config_table(Path(sys.argv[2]))
        print(f"rewrote {TABLE_HEADER} in {sys.argv[2]}")
    elif len(sys.argv) == 1:
        print(TABLE_HEADER)
        print(app_config_table())
    else:
        sys.exit("usage: python -m fedkd.deploy.run_config [--write pyproject.toml]")
