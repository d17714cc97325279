"""The pure pieces behind the sim's structured answers: where a stop string cuts, and JSON values built to
satisfy the schemas tools and structured-output libraries send (checked with jsonschema)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from inferstack.engines.sim.errors import SimApiError
from inferstack.engines.sim.structured import Structured, cut_at_stop, json_tokens, structured_answer

TOKENS = ["The", " quick", " model", " sends"]


@pytest.mark.parametrize(("stops", "kept", "stop"), [
    ([], TOKENS, None),
    (["absent"], TOKENS, None),
    ([" qu"], ["The"], " qu"),
    (["ick m"], ["The", " qu"], "ick m"),
    ([" sends", " quick"], ["The"], " quick"),  # the earliest in the text wins, not the first listed
    (["The"], [], "The"),
])
def test_a_stop_string_cuts_before_itself(stops: list[str], kept: list[str], stop: str | None) -> None:
    assert cut_at_stop(TOKENS, stops) == (kept, stop)


SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"n": {"type": "integer", "exclusiveMinimum": 5, "maximum": 9}},
     "required": ["n"]},
    {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string", "minLength": 12},
                                               "minItems": 3, "maxItems": 3}}},
    {"type": "object", "properties": {"kind": {"enum": ["a", "b"]}, "fixed": {"const": 7},
                                      "maybe": {"anyOf": [{"type": "null"}, {"type": "boolean"}]},
                                      "either": {"type": ["null", "string"], "maxLength": 2}}},
    {"$defs": {"Leaf": {"type": "object", "properties": {"v": {"type": "integer"}}, "required": ["v"]}},
     "type": "object", "properties": {"leaf": {"$ref": "#/$defs/Leaf"}}, "required": ["leaf"]},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_json_answers_satisfy_their_schema(schema: dict[str, Any]) -> None:
    value = json.loads("".join(json_tokens(Structured(schema), ["alpha", " beta"])))
    jsonschema.validate(value, schema)


def test_json_answers_are_split_into_short_tokens_and_json_object_gets_an_object() -> None:
    tokens = json_tokens(Structured(None), ["alpha"])
    assert json.loads("".join(tokens)) == {"answer": "alpha"} and max(map(len, tokens)) <= 4


@pytest.mark.parametrize(("body", "expected"), [
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, Structured({"type": "object", "properties": {}},
                                                                              tool="f")),
    ({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "none"}, None),
    ({"response_format": {"type": "text"}}, None),
    ({"response_format": {"type": "json_object"}}, Structured(None)),
])
def test_what_a_body_asks_for(body: dict[str, Any], expected: Structured | None) -> None:
    assert structured_answer(body) == expected


@pytest.mark.parametrize("body", [
    {"tools": "f"},
    {"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function",
                                                                                 "function": {"name": "g"}}},
    {"tool_choice": "required"},
    {"response_format": {"type": "yaml"}},
    {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
])
def test_malformed_options_are_a_400(body: dict[str, Any]) -> None:
    with pytest.raises(SimApiError) as refused:
        structured_answer(body)
    assert refused.value.status == 400
