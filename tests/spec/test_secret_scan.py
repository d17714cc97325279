"""A secret in `engine_args` is refused at spec validation, on every target, without echoing it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from inferstack.declared.stackfile import StackFileError, parse_config
from inferstack.secret_scan import redact, secret_findings
from inferstack.spec import DeploymentSpec

HF = "hf_" + "Ab3dE6gH9jK2mN5pQ8sT1vW4"
SK = "sk-" + "proj4Fq9Zt7Lm2Xc8Vb1Nw6Ry3"
AWS = "AKIA" + "IOSFODNN7EXAMPLE"
RANDOM = "Zt7Lm2Xc8Vb1Nw6Ry3Fq9"


@pytest.mark.parametrize("args", [
    ["--api-key", "short"],
    ["--api-key=abc"],
    ["--hf-token", "whatever"],
    [f"--model-loader-extra-config={{\"token\": \"{HF}\"}}"],
    [HF],
    ["--foo", SK],
    [f"--env=AWS_ACCESS_KEY_ID={AWS}"],
    [f"--download-dir=s3://bucket/models?token={RANDOM}"],
])
def test_secret_shapes_are_found(args: list[str]) -> None:
    assert secret_findings(args)


@pytest.mark.parametrize("args", [
    ["--max-model-len", "4096", "--dtype", "bfloat16", "--gpu-memory-utilization=0.9"],
    ["--enable-prefix-caching", "--tokenizer-mode=auto", "--served-model-name", "chat-sk-model"],
    ["--hf-overrides", '{"max_position_embeddings": 8192}', "--max-num-batched-tokens=8192"],
    ["--tokenizer=meta-llama/Llama-3.1-8B-Instruct", "--kv-cache-dtype=fp8"],
])
def test_ordinary_engine_flags_pass(args: list[str]) -> None:
    assert secret_findings(args) == []


def test_the_spec_refuses_a_secret_and_the_message_never_holds_it() -> None:
    with pytest.raises(ValidationError) as caught:
        DeploymentSpec(hf_model_id="m", hardware_profile="cpu", engine_args=["--max-model-len", "64", "--api-key", SK])
    message = str(caught.value)
    assert "engine_args" in message and "--api-key" in message and SK not in message


@pytest.mark.parametrize("target", ["local", "kubernetes", "aws"])
def test_every_target_refuses_it_at_stack_validation(target: str) -> None:
    with pytest.raises(StackFileError) as caught:
        parse_config({"inferstack:target": target, "inferstack:deployments": [
            {"name": "a", "hf_model_id": "m", "hardware_profile": "gpu.l4", "engine_args": ["--hf-token", HF]}]},
            "dev")
    errors = {e["field"]: e["message"] for e in caught.value.errors}
    assert "looks like a secret" in errors["inferstack:deployments[0](a).engine_args"]
    assert HF not in str(caught.value)


@pytest.mark.parametrize(("line", "kept"), [
    (f"loading with token {HF} from the hub", "loading with token [redacted] from the hub"),
    (f"non-default args: {{'model': 'm', 'api_key': '{SK}', 'port': 8000}}", "'model': 'm'"),
    ("vllm serve m --api-key Zq81xKd0Pw --port 8000", "vllm serve m --api-key [redacted] --port 8000"),
    ("HF_TOKEN=abc123 python -m x", "HF_TOKEN=[redacted] python -m x"),
    ("INFO: max_model_len=4096, dtype=bfloat16", "INFO: max_model_len=4096, dtype=bfloat16"),
])
def test_a_log_line_keeps_what_it_says_and_loses_its_secrets(line: str, kept: str) -> None:
    redacted = redact(line)
    assert kept in redacted
    for secret in (HF, SK, "Zq81xKd0Pw", "abc123"):
        assert secret not in redacted


def test_a_known_secret_of_any_shape_is_redacted_verbatim() -> None:
    assert redact("key was plain-looking-words ok", known=["plain-looking-words"]) == "key was [redacted] ok"
