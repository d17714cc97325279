from __future__ import annotations

from inferstack.controller.probes import engine_gauges

PAGE = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="tiny"} 3.0
vllm:num_requests_running{engine="1",model_name="tiny"} 1.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="tiny"} 7.0
# HELP vllm:kv_cache_usage_perc KV-cache usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="tiny"} 0.5
"""


def test_the_engine_queue_gauges_are_summed_over_engines() -> None:
    assert engine_gauges(PAGE) == {"vllm:num_requests_running": 4, "vllm:num_requests_waiting": 7}


def test_a_page_without_them_gives_nothing() -> None:
    assert engine_gauges("# nothing here\n") == {}
