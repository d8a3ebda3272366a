"""The layers hold: no import cycles, the library never imports the apps, the product never imports faults.

Imports are read with ``ast`` from every module of ``fedkd/``, ``server/`` and ``clients/``, function-level
imports included, so a cycle cannot hide behind a lazy import.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fedkd", "server", "clients")
APP_LAYER = ("fedkd.cli", "fedkd.deploy")  # the command line and deployment helpers may import the apps
PRODUCT = ("clients", "server", "fedkd.protocol", "fedkd.wire", "fedkd.client_step", "fedkd.fusion",
           "fedkd.config", "fedkd.settings", "fedkd.node_inputs", "fedkd.data", "fedkd.privacy")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in names:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                targets.add(target)
    # a package importing its own children is how packages work, not a cycle
    return {t for t in targets if not (name.startswith(t + ".") and known[t].name == "__init__.py")}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_the_library_never_imports_the_apps():
    upward = sorted(f"{m} -> {t}" for m, ts in graph().items() for t in ts
                    if m.startswith("fedkd") and not m.startswith(APP_LAYER) and not t.startswith("fedkd"))
    assert upward == []


FAULT_DECLARATIONS = "fedkd.faults.settings"  # the fault.* keys: declarations only, collected by the config


def test_the_product_never_imports_fault_injection():
    edges = graph()
    faulty = sorted(f"{m} -> {t}" for m, ts in edges.items() for t in ts
                    if t.startswith("fedkd.faults") and t != FAULT_DECLARATIONS and m.startswith(PRODUCT))
    assert faulty == []
    # the declarations themselves pull in nothing of the injector
    assert not [t for t in edges[FAULT_DECLARATIONS] if t.startswith("fedkd.faults")]


# The run config by key name is for the app layer only; below it, modules take typed settings.
CONFIG_NAMES = {"cfg", "config", "run_config", "values"}
BELOW_APP = [name for name in modules() if name.startswith("fedkd") and not name.startswith(APP_LAYER)
             and name not in ("fedkd.config", "fedkd.keys")]


def string_lookups(path: Path, root: Path = ROOT) -> list[str]:
    """``cfg["key"]``, ``cfg.get("key")`` (also ``self.cfg``/``art.cfg``...) on a config-like name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        target, key = None, None
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
                and isinstance(node.slice.value, str):
            target, key = node.value, node.slice.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            target, key = node.func.value, node.args[0].value
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
        if name in CONFIG_NAMES:
            shown = ast.unparse(target)
            found.append(f"{path.relative_to(root)}:{node.lineno} {shown}[{key!r}]")
    return found


def test_no_string_keyed_config_lookups_below_the_app_layer():
    known = modules()
    assert [hit for name in BELOW_APP for hit in string_lookups(known[name])] == []


def test_the_checker_sees_string_lookups(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f(cfg, art):\n    return cfg['rounds'], art.cfg.get('seed'), cfg.run.rounds\n")
    assert [h.split(" ", 1)[1] for h in string_lookups(module, root=tmp_path)] == ["cfg['rounds']", "art.cfg['seed']"]


def test_every_key_is_declared_exactly_once():
    """Each key of the schema comes from one ``setting(...)`` of one settings group, and nowhere else."""
    from fedkd.config import schema
    from fedkd.keys import SETTINGS_GROUPS

    declared = [key for group in SETTINGS_GROUPS.values() for key in group.keys]
    assert sorted(declared) == sorted(schema())
    assert len(declared) == len(set(declared))
    # no module keeps a table of Key(...) entries of its own
    tables = [f"{name}" for name, path in modules().items() if name != "fedkd.keys"
              and any(isinstance(n, ast.Call) and getattr(n.func, "id", None) == "Key"
                      for n in ast.walk(ast.parse(path.read_text())))]
    assert tables == []
    # a shared field names a key that some group declares
    for group in SETTINGS_GROUPS.values():
        assert set(group.fields.values()) <= set(schema()), group.cls


def test_the_checker_sees_function_level_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from fedkd import config\n")
    assert imports_of("fedkd.m", module, {"fedkd.m": module, "fedkd.config": module}) == {"fedkd.config"}
