"""Every command the trainer receives, checked against the protocol's JSON Schema.

The schema is read off the TypeScript codecs of the protocol (`effects/torch_protocol.ts`, by
`effects/codec_schema.ts`) and written by each launch (`trainer.py --protocol FILE`), so both
sides check one declaration. Only the keywords `codec_schema.ts` writes are understood: a schema
with any other is refused when it is loaded, so the two cannot drift apart unnoticed. Messages
read like the TypeScript side's decode errors (`base/codec.ts`): `path: expected ... (got ...)`.
Standard library only.
"""

from __future__ import annotations

import json
import math

# Keywords that say nothing about the value.
ANNOTATIONS = {"$schema", "title", "description", "$comment"}
KEYWORDS = {
    "type",
    "minimum",
    "const",
    "enum",
    "items",
    "anyOf",
    "properties",
    "required",
    "additionalProperties",
}
TYPES = {"number", "integer", "string", "boolean", "null", "object", "array"}
MISSING = object()


class CommandRefused(ValueError):
    """A command that does not fit the protocol's schema."""


def load_schema(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        schema = json.load(f)
    check_schema(schema, "(root)")
    return schema


def check_schema(s: object, at: str) -> None:
    """Refuses a schema that uses what this validator does not understand."""
    if not isinstance(s, dict):
        raise ValueError(f"protocol schema at {at}: expected an object")
    unknown = sorted(set(s) - KEYWORDS - ANNOTATIONS)
    if unknown:
        raise ValueError(f"protocol schema at {at}: keywords {unknown} are not understood by protocol.py")
    if "type" in s and s["type"] not in TYPES:
        raise ValueError(f"protocol schema at {at}: type {s['type']!r} is not understood by protocol.py")
    if s.get("additionalProperties", False) is not False:
        raise ValueError(f"protocol schema at {at}: only additionalProperties false is understood")
    for k, v in s.get("properties", {}).items():
        check_schema(v, f"{at}.properties.{k}")
    if "items" in s:
        check_schema(s["items"], f"{at}.items")
    for i, v in enumerate(s.get("anyOf", [])):
        check_schema(v, f"{at}.anyOf[{i}]")


def check_command(schema: dict, command: object) -> dict:
    """The command, when it fits the schema; else CommandRefused naming every field that does not."""
    problems = errors(schema, command, "")
    if problems:
        op = command.get("op") if isinstance(command, dict) else None
        raise CommandRefused(f"the {json.dumps(op)} command does not fit the protocol: " + "; ".join(problems))
    return command  # type: ignore[return-value]


def errors(schema: dict, value: object, path: str) -> list[str]:
    """One line per problem of `value` at `path`."""
    if "anyOf" in schema:
        return any_of(schema["anyOf"], value, path)
    if "const" in schema:
        return [] if same(value, schema["const"]) else [line(path, expected(schema), value)]
    if "enum" in schema:
        return [] if any(same(value, v) for v in schema["enum"]) else [line(path, expected(schema), value)]
    if not fits(schema, value):
        return [line(path, expected(schema), value)]
    if schema.get("type") == "array":
        return [e for i, v in enumerate(value) for e in errors(schema["items"], v, f"{path}[{i}]")]
    if schema.get("type") == "object":
        return object_errors(schema, value, path)
    return []


def object_errors(schema: dict, value: dict, path: str) -> list[str]:
    props = schema.get("properties", {})
    out = []
    if schema.get("additionalProperties") is False:
        for k in value:
            if k not in props:
                out.append(line(join(path, k), f'unknown field "{k}" (known: {", ".join(props)})', value[k]))
    for k in schema.get("required", []):
        if k not in value:
            out.append(line(join(path, k), expected(props[k]), MISSING))
    for k, sub in props.items():
        if k in value:
            out += errors(sub, value[k], join(path, k))
    return out


def any_of(branches: list[dict], value: object, path: str) -> list[str]:
    """A tagged union picks its branch by the tag (a field every branch fixes); another union
    fits when a branch does, else reports the branch it came nearest to."""
    tag = tag_of(branches)
    if tag is not None and isinstance(value, dict):
        got = value.get(tag, MISSING)
        for b in branches:
            if same(got, b["properties"][tag]["const"]):
                return errors(b, value, path)
        tags = " | ".join(json.dumps(b["properties"][tag]["const"]) for b in branches)
        return [line(join(path, tag), f"expected {tags}", got)]
    results = [errors(b, value, path) for b in branches]
    if any(not r for r in results):
        return []
    return min(results, key=len)


def tag_of(branches: list[dict]) -> str | None:
    first = branches[0].get("properties", {}) if branches else {}
    for k in first:
        if all("const" in b.get("properties", {}).get(k, {}) for b in branches):
            return k
    return None


def is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def fits(schema: dict, v: object) -> bool:
    kind = schema.get("type")
    if kind in ("number", "integer"):
        if not is_number(v) or (kind == "integer" and not float(v).is_integer()):
            return False
        return v >= schema.get("minimum", -math.inf)
    checks = {
        "string": lambda: isinstance(v, str),
        "boolean": lambda: isinstance(v, bool),
        "null": lambda: v is None,
        "object": lambda: isinstance(v, dict),
        "array": lambda: isinstance(v, list),
    }
    return checks[kind]() if kind in checks else True


def same(a: object, b: object) -> bool:
    """JSON equality: true is not 1."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def expected(schema: dict) -> str:
    if "const" in schema:
        return f"expected {json.dumps(schema['const'])}"
    if "enum" in schema:
        return "expected " + " | ".join(json.dumps(v) for v in schema["enum"])
    if "anyOf" in schema:
        return "expected " + " or ".join(expected(b)[len("expected ") :] for b in schema["anyOf"])
    kind = schema.get("type")
    low = schema.get("minimum")
    if kind == "integer":
        return "expected " + ("an integer" if low is None else "a non-negative integer" if low == 0 else f"an integer ≥ {low}")
    what = {
        "number": "a number",
        "string": "a string",
        "boolean": "true or false",
        "null": "null",
        "object": "an object",
        "array": "an array",
    }.get(kind, "a value")
    return f"expected {what}" + ("" if low is None else f" ≥ {low}")


def join(path: str, key: str) -> str:
    return key if path == "" else f"{path}.{key}"


def line(path: str, what: str, value: object) -> str:
    if value is MISSING:
        got = "missing"
    else:
        text = json.dumps(value)
        got = "got " + (text if len(text) <= 80 else text[:77] + "...")
    return f"{path or '(root)'}: {what} ({got})"
