"""The `sim` engine: a simulated, vLLM-compatible OpenAI server with a timing model.

It speaks the same HTTP surface as `python -m vllm.entrypoints.openai.api_server` (routes, response and
error shapes, SSE framing, Prometheus metric names, `--api-key` guarding `/v1`) so the control plane,
gateway, autoscaler and batch runtime can be developed, load-tested and capacity-planned without a GPU.
The text it returns is deterministic filler: it is never presented as a model.

Run it as `python -m inferstack.engines.sim --port 8000 --served-model-name my-model`, or in process
with `app.build_app(SimConfig(...))`. One module per concern, lowest first:

- `config`: `SimConfig`, everything the engine is told (the vLLM flags it imitates plus the timing model).
- `timing`: the pure timing model (prefill wait, decode schedule, tokens held in the KV cache).
- `filler`: deterministic filler tokens and embedding vectors.
- `errors`: vLLM's error shape.
- `parsing`: request parsing and validation, down to a plan of what to generate.
- `responses`: OpenAI objects and SSE chunks.
- `metrics`: Prometheus series with vLLM's names, labels and buckets.
- `scheduler`: admission (the sequence limit), prefill and accounting.
- `generation`: drives one generate request, streamed or not.
- `app`: the aiohttp application and its routes.
- `server` and `__main__`: the process (signals, simulated weight loading) and its command line.
"""
