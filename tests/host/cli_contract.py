"""The `ipa --json` contract as the tests check it: every document the real command prints
is validated against docs/cli-output.schema.json (jsonschema, an implementation nobody
here wrote) before a test reads it."""

import json
import os

import jsonschema

SCHEMA_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "cli-output.schema.json")
with open(SCHEMA_PATH) as _f:
    SCHEMA = json.load(_f)
jsonschema.Draft202012Validator.check_schema(SCHEMA)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def envelope(text, command=None):
    """The one JSON document of a run, checked against the schema (and its command)."""
    doc = json.loads(text)
    VALIDATOR.validate(doc)
    if command is not None:
        assert doc["command"] == command, doc
    return doc


def result(text, command=None):
    """The result of a run that succeeded (ok true, exit code 0)."""
    doc = envelope(text, command)
    assert doc["ok"] and doc["error"] is None, doc
    return doc["result"]


def lines(text, command="run"):
    """JSON Lines (`ipa run`): one envelope per cycle, each checked."""
    return [envelope(line, command) for line in text.splitlines() if line.strip()]
