"""The config schema's parts for safe automatic delivery (`history`, `windows`, `checks`,
`on_check_failure`, `promotion`), apart from syncd.config.schema, which puts them in, to keep
that module short. The same rules: what the parser accepts, never more strictly. The helpers
are syncd.config.schema's, imported when called (that module imports this one).
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def history_schema() -> Schema:
    """`history`: a count of runs; a number of days (not a duration string: the key names its
    unit), more than 0, at most a hundred years."""
    from syncd.config.schema import section  # late: it imports this module

    keep_days: Schema = {
        "description": "days, more than 0 (90, or 0.5 for twelve hours)",
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": 36_500,
    }
    return section({"keep_runs": {"type": "integer", "minimum": 1}, "keep_days": keep_days})


def window_schema() -> Schema:
    """An entry of `windows`: a 5-field cron schedule, a duration, an IANA zone (the parser
    also checks that the schedule parses, the zone exists and the duration is not 0)."""
    from syncd.config.schema import BOOL, DURATION, TEXT, section  # late: it imports this module

    return section(
        {
            "kind": {"enum": ["allow", "deny"]},
            "schedule": {**TEXT, "pattern": r"^\s*[^\s]+(\s+[^\s]+){4}\s*$"},
            "duration": DURATION,
            "timezone": TEXT,
            "manual_sync": BOOL,
        },
        required=("kind", "schedule", "duration"),
    )


def check_schema() -> Schema:
    """An entry of `checks`: exactly one of http and command (the parser also compiles the
    regex, refuses credentials in the URL and duplicate names)."""
    from syncd.config.schema import DURATION, TEXT, section  # late: it imports this module

    url: Schema = {**TEXT, "pattern": r"^[Hh][Tt][Tt][Pp][Ss]?://[^\u0000-\u0020\u007f]+$"}
    status: Schema = {"type": "integer", "minimum": 100, "maximum": 599}
    http = section(
        {"url": url, "expect_status": status, "expect_body": TEXT, "ca_file": TEXT}, ("url",)
    )
    argv: Schema = {"type": "array", "minItems": 1, "maxItems": 256, "items": TEXT}
    # NAME: a value; NAME_env: the daemon's variable that holds it
    env: Schema = {
        "type": "object",
        "maxProperties": 32,
        "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
        "additionalProperties": TEXT,
    }
    out = section(
        {
            **{
                "name": TEXT,
                "http": http,
                "command": section({"argv": argv, "env": env}, ("argv",)),
            },
            **{"timeout": DURATION, "interval": DURATION},
            "retries": {"type": "integer", "minimum": 0, "maximum": 100},
        },
        required=("name",),
    )
    return out | {"oneOf": [{"required": ["http"]}, {"required": ["command"]}]}


def delivery_keys() -> dict[str, Schema]:
    """`windows`, `promotion`, `checks` and `on_check_failure`, of a workspace and of
    `defaults`."""
    from syncd.config.schema import DURATION, TEXT, ref, section  # late: it imports this module

    after: Schema = {"anyOf": [TEXT, {"type": "integer", "minimum": 0}]}
    return {
        "windows": {"type": "array", "maxItems": 32, "items": ref("window")},
        "promotion": section({"after": after, "soak": DURATION}, required=("after",)),
        "checks": {"type": "array", "maxItems": 16, "items": ref("check")},
        "on_check_failure": {"enum": ["rollback", "keep"]},
    }
