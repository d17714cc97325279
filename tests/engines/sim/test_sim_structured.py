"""The sim engine honours what shapes an answer, as vLLM does: stop strings cut the text, logprobs are there
in OpenAI's shapes, tools get a call whose arguments satisfy the tool's schema, and `response_format` gets
JSON that satisfies the schema; whole and streamed. Through the official `openai` client and LangChain."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

import jsonschema
import openai
import pytest
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field
from sim_support import MODEL, StartSim

Clients = Callable[..., openai.AsyncOpenAI]
HELLO = [{"role": "user", "content": "Tell me about the weather in Paris"}]


class Address(BaseModel):
    city: str = Field(min_length=3)
    zip_code: str | None = None


class Forecast(BaseModel):
    """The weather where someone asked."""

    place: Address
    unit: Literal["celsius", "fahrenheit"]
    days: int = Field(ge=1, le=7)
    temperatures: list[float] = Field(min_length=2)
    windy: bool


WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Look up a forecast",
                                                 "parameters": Forecast.model_json_schema()}}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}}, "required": ["zone"]}}}


@pytest.fixture
async def client(start_sim: StartSim, clients: Clients) -> openai.AsyncOpenAI:
    return clients(await start_sim())


async def streamed_chat(client: openai.AsyncOpenAI, **options: Any) -> tuple[str, list[Any]]:
    """The content a streamed chat completion adds up to, and its chunks."""
    chunks = [c async for c in await client.chat.completions.create(model=MODEL, messages=HELLO, stream=True,
                                                                     **options)]
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks


async def test_a_stop_string_cuts_the_text_whole_and_streamed(client: openai.AsyncOpenAI) -> None:
    free = (await client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=12)).choices[0]
    text = free.message.content or ""
    stop = text.split(" ")[3]  # the fourth word: the answer stops just before its leading space
    cut = text[: text.index(" " + stop)]
    stopped = (await client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=12,
                                                    stop=[" " + stop, "never there"])).choices[0]
    assert (stopped.message.content, stopped.finish_reason) == (cut, "stop")
    content, chunks = await streamed_chat(client, max_tokens=12, stop=" " + stop)
    assert content == cut and [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    completion = await client.completions.create(model=MODEL, prompt="Paris", max_tokens=12)
    words = completion.choices[0].text.split(" ")
    stopped_text = await client.completions.create(model=MODEL, prompt="Paris", max_tokens=12, stop=words[2])
    assert stopped_text.choices[0].text == completion.choices[0].text.split(words[2])[0]
    assert stopped_text.choices[0].finish_reason == "stop"


async def test_logprobs_are_present_and_shaped_like_openais(client: openai.AsyncOpenAI) -> None:
    reply = (await client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=6, logprobs=True,
                                                  top_logprobs=3)).choices[0]
    assert reply.logprobs is not None and reply.logprobs.content is not None
    tokens = reply.logprobs.content
    assert "".join(t.token for t in tokens) == reply.message.content and len(tokens) == 6
    for t in tokens:
        assert len(t.top_logprobs) == 3 and t.top_logprobs[0].token == t.token and t.logprob < 0
        assert t.bytes == list(t.token.encode()) and t.logprob >= max(a.logprob for a in t.top_logprobs)
    _, chunks = await streamed_chat(client, max_tokens=6, logprobs=True)
    streamed = [e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content or []]
    assert [e.token for e in streamed] == [t.token for t in tokens]
    plain = (await client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=3)).choices[0]
    assert plain.logprobs is None

    legacy = (await client.completions.create(model=MODEL, prompt="Paris", max_tokens=5, logprobs=2)).choices[0]
    assert legacy.logprobs is not None and "".join(legacy.logprobs.tokens or []) == legacy.text
    assert legacy.logprobs.text_offset == [len("".join((legacy.logprobs.tokens or [])[:i])) for i in range(5)]
    assert all(len(top) == 2 for top in legacy.logprobs.top_logprobs or [])
    with pytest.raises(openai.BadRequestError, match="top_logprobs"):
        await client.chat.completions.create(model=MODEL, messages=HELLO, logprobs=True, top_logprobs=21)


async def test_tools_get_a_call_whose_arguments_satisfy_the_schema(client: openai.AsyncOpenAI) -> None:
    reply = (await client.chat.completions.create(model=MODEL, messages=HELLO,
                                                  tools=[WEATHER_TOOL, TIME_TOOL])).choices[0]
    assert reply.finish_reason == "tool_calls" and reply.message.content is None
    call = (reply.message.tool_calls or [])[0]
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    Forecast.model_validate_json(call.function.arguments)

    named = (await client.chat.completions.create(
        model=MODEL, messages=HELLO, tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_time"}})).choices[0]
    arguments = json.loads((named.message.tool_calls or [])[0].function.arguments)
    jsonschema.validate(arguments, TIME_TOOL["function"]["parameters"])  # type: ignore[index]

    chunks = [c async for c in await client.chat.completions.create(model=MODEL, messages=HELLO, stream=True,
                                                                     tools=[WEATHER_TOOL])]
    deltas = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
    assert deltas[0].function and deltas[0].function.name == "get_weather" and deltas[0].id
    Forecast.model_validate_json("".join(d.function.arguments or "" for d in deltas if d.function))

    words = (await client.chat.completions.create(model=MODEL, messages=HELLO, tools=[WEATHER_TOOL],
                                                  tool_choice="none")).choices[0]
    assert words.message.tool_calls is None and words.message.content
    with pytest.raises(openai.BadRequestError, match="get_date"):
        await client.chat.completions.create(model=MODEL, messages=HELLO, tools=[WEATHER_TOOL],
                                             tool_choice={"type": "function", "function": {"name": "get_date"}})


async def test_response_format_gets_json_that_satisfies_the_schema(client: openai.AsyncOpenAI) -> None:
    schema = Forecast.model_json_schema()
    response_format: Any = {"type": "json_schema", "json_schema": {"name": "forecast", "schema": schema}}
    reply = (await client.chat.completions.create(model=MODEL, messages=HELLO,
                                                  response_format=response_format)).choices[0]
    assert reply.finish_reason == "stop"
    jsonschema.validate(json.loads(reply.message.content or ""), schema)
    content, _ = await streamed_chat(client, response_format=response_format)
    jsonschema.validate(json.loads(content), schema)

    parsed = (await client.chat.completions.parse(model=MODEL, messages=HELLO, response_format=Forecast)).choices[0]
    assert isinstance(parsed.message.parsed, Forecast)

    anything = (await client.chat.completions.create(model=MODEL, messages=HELLO,
                                                     response_format={"type": "json_object"})).choices[0]
    assert isinstance(json.loads(anything.message.content or ""), dict)
    cut = (await client.chat.completions.create(model=MODEL, messages=HELLO, response_format=response_format,
                                                max_tokens=3)).choices[0]
    assert cut.finish_reason == "length"  # as vLLM: a cap cuts the JSON short, and says so


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
async def test_langchain_with_structured_output_gets_the_object(start_sim: StartSim, method: str) -> None:
    url = await start_sim()
    chat = ChatOpenAI(model=MODEL, base_url=f"{url}/v1", api_key="unused", max_retries=0)  # type: ignore[arg-type]
    forecast = await chat.with_structured_output(Forecast, method=method).ainvoke("The weather in Paris?")  # type: ignore[arg-type]
    assert isinstance(forecast, Forecast) and len(forecast.place.city) >= 3 and 1 <= forecast.days <= 7
