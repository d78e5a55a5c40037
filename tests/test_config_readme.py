"""config/README.md documents every key of the config schema and every shipped config."""

from pathlib import Path

from metalr.config import config_schema

ROOT = Path(__file__).resolve().parents[1]


def _keys(node: dict, defs: dict, seen: frozenset = frozenset()) -> set[str]:
    """Every property name under ``node``, following ``$ref`` into ``$defs`` once per path."""
    names = set()
    ref = node.get("$ref")
    if ref and ref not in seen:
        names |= _keys(defs[ref.rsplit("/", 1)[-1]], defs, seen | {ref})
    for name, child in node.get("properties", {}).items():
        names.add(name)
        names |= _keys(child, defs, seen)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        names |= _keys(extra, defs, seen)
    if isinstance(node.get("items"), dict):
        names |= _keys(node["items"], defs, seen)
    return names


def test_config_readme_names_every_schema_key_and_every_shipped_config():
    schema = config_schema()
    readme = (ROOT / "config/README.md").read_text()
    keys = _keys(schema, schema["$defs"])
    assert len(keys) > 80  # the walk reached the nested definitions (task, dataset, probes, ...)
    missing = sorted(k for k in keys if f"`{k}`" not in readme)
    assert not missing, f"config/README.md does not describe: {missing}"
    shipped = sorted(p.name for p in (ROOT / "config").glob("*.yaml"))
    assert shipped and not [name for name in shipped if f"`{name}`" not in readme]
