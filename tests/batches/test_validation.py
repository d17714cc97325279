"""Input-file validation: each problem reported on its line, with a code and the parameter at fault."""

from __future__ import annotations

import orjson
import pytest

from inferstack.batches.validation import MAX_REPORTED_ERRORS, FileCheck, LineRequest, parse_line

CHAT = "/v1/chat/completions"


def line(**overrides: object) -> bytes:
    item: dict[str, object] = {"custom_id": "a", "method": "POST", "url": CHAT,
                               "body": {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}}
    item.update(overrides)
    return orjson.dumps(item)


def check(lines: list[bytes], endpoint: str = CHAT, models: frozenset[str] = frozenset({"chat"})) -> FileCheck:
    checker = FileCheck(endpoint, lambda model: model in models)
    for number, raw in enumerate(lines, start=1):
        checker.feed(raw, number)
    return checker


def test_a_valid_line_parses_to_its_request() -> None:
    parsed = parse_line(line(), 7, CHAT)
    assert parsed == LineRequest(7, "a", "chat", {"model": "chat", "messages": [{"role": "user", "content": "hi"}]})


@pytest.mark.parametrize(("raw", "code", "param"), [
    (b'{"custom_id": "a", ', "invalid_json_line", None),
    (b'["a list"]', "invalid_json_line", None),
    (line(custom_id=None), "missing_required_parameter", "custom_id"),
    (line(custom_id=7), "invalid_type", "custom_id"),
    (line(custom_id=""), "invalid_type", "custom_id"),
    (line(method="GET"), "invalid_method", "method"),
    (line(url="/v1/embeddings"), "invalid_url", "url"),
    (line(body="text"), "missing_required_parameter", "body"),
    (line(body={"messages": []}), "missing_required_parameter", "body.model"),
    (line(body={"model": "chat"}), "missing_required_parameter", "body.messages"),
    (line(body={"model": "chat", "messages": [], "stream": True}), "invalid_value", "body.stream"),
])
def test_each_problem_has_its_code_line_and_param(raw: bytes, code: str, param: str | None) -> None:
    errors = check([line(custom_id="ok"), raw]).finish()
    assert [(e.code, e.line, e.param) for e in errors] == [(code, 2, param)]
    assert "Line 2" in errors[0].message


def test_each_endpoint_requires_its_own_body_field() -> None:
    embed = orjson.dumps({"custom_id": "e", "method": "POST", "url": "/v1/embeddings",
                          "body": {"model": "chat", "input": "text"}})
    complete = orjson.dumps({"custom_id": "c", "method": "POST", "url": "/v1/completions",
                             "body": {"model": "chat", "prompt": "Once"}})
    assert check([embed], "/v1/embeddings").finish() == []
    assert check([complete], "/v1/completions").finish() == []
    assert check([complete.replace(b"prompt", b"promp")], "/v1/completions").finish()[0].param == "body.prompt"


def test_a_duplicate_custom_id_names_both_lines() -> None:
    errors = check([line(custom_id="x"), line(custom_id="y"), line(custom_id="x")]).finish()
    assert [(e.code, e.line) for e in errors] == [("duplicate_custom_id", 3)]
    assert "line 1" in errors[0].message


def test_an_unknown_model_is_an_error_on_every_line_that_uses_it_and_asked_about_once() -> None:
    asked: list[str] = []

    def resolves(model: str) -> bool:
        asked.append(model)
        return model == "chat"

    checker = FileCheck(CHAT, resolves)
    for number in range(1, 5):
        model = "chat" if number == 1 else "ghost"
        checker.feed(line(custom_id=str(number), body={"model": model, "messages": []}), number)
    errors = checker.finish()
    assert [(e.code, e.line, e.param) for e in errors] == [("model_not_found", n, "body.model") for n in (2, 3, 4)]
    assert sorted(asked) == ["chat", "ghost"]


def test_blank_lines_are_skipped_but_keep_the_numbering() -> None:
    checker = check([line(custom_id="a"), b"", b"   ", b"nonsense"])
    assert [(e.code, e.line) for e in checker.finish()] == [("invalid_json_line", 4)]
    assert checker.requests == 2


def test_an_empty_file_fails() -> None:
    assert [e.code for e in check([b"", b"\r"]).finish()] == ["empty_file"]


def test_errors_beyond_the_reported_ones_are_summed_up() -> None:
    errors = check([b"{"] * (MAX_REPORTED_ERRORS + 5)).finish()
    assert len(errors) == MAX_REPORTED_ERRORS + 1
    assert errors[-1].code == "too_many_errors" and "5 more lines" in errors[-1].message
