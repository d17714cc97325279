from __future__ import annotations

import pytest
from pydantic import ValidationError

from inferstack.hardware import MODELS, PROFILES, smallest_fitting_gpus
from inferstack.spec import DeploymentSpec, describe_errors, error_fields


def errors_of(**fields: object) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as caught:
        DeploymentSpec.model_validate(fields)
    return error_fields(caught.value.errors())


def test_defaults_match_the_documented_ones() -> None:
    spec = DeploymentSpec(hf_model_id="meta-llama/Llama-3.1-8B-Instruct")
    assert (spec.hardware_profile, spec.min_replicas, spec.max_replicas) == ("gpu.a100", 1, 1)
    assert (spec.target_rps, spec.target_latency_p95_ms, spec.stabilisation_window) == (10.0, 5000, 300)
    assert spec.idle_timeout_s == 3600 and spec.engine == "vllm"


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"min_replicas": 3, "max_replicas": 2}, "min_replicas", "must not exceed max_replicas (2)"),
        ({"target_rps": 0}, "target_rps", "greater than 0"),
        ({"target_latency_p95_ms": -5}, "target_latency_p95_ms", "greater than 0"),
        ({"hardware_profile": "gpu.tpu9"}, "hardware_profile", "unknown"),
        ({"engine": "tgi"}, "engine", "vllm"),
        ({"name": "Bad_Name"}, "name", "lower-case"),
        ({"gpus_per_replica": 16}, "gpus_per_replica", "less than or equal to 8"),
        ({"max_price_per_hour": 5.0, "min_replicas": 2, "max_replicas": 2}, "max_price_per_hour",
         "cost of min_replicas: 2 x 4.1 = 8.2"),
        ({"max_price_per_hour": 1.0, "min_replicas": 0}, "max_price_per_hour", "below the price of one replica"),
        ({"colour": "blue"}, "colour", "Extra inputs"),
    ],
)
def test_a_bad_spec_is_rejected_naming_the_field(fields: dict[str, object], field: str, words: str) -> None:
    found = errors_of(hf_model_id="Qwen/Qwen2.5-7B-Instruct", **fields)
    assert found[0]["field"] == field
    assert words in found[0]["message"]


def test_a_catalogued_model_that_cannot_fit_names_the_numbers() -> None:
    found = errors_of(hf_model_id="meta-llama/Llama-3.1-70B-Instruct", hardware_profile="gpu.l4")
    assert found[0]["field"] == "hf_model_id"
    assert "141.2 GB" in found[0]["message"] and "17.3 GB usable" in found[0]["message"]
    # With enough GPUs per replica it does fit.
    DeploymentSpec(hf_model_id="meta-llama/Llama-3.1-70B-Instruct", hardware_profile="gpu.a100", gpus_per_replica=8)


def test_the_catalogue_knows_what_fits_where() -> None:
    llama8 = MODELS["meta-llama/Llama-3.1-8B-Instruct"]
    assert smallest_fitting_gpus(llama8, PROFILES["gpu.l4"]) == 1
    assert smallest_fitting_gpus(MODELS["meta-llama/Llama-3.1-70B-Instruct"], PROFILES["gpu.h100"]) == 4
    assert smallest_fitting_gpus(MODELS["meta-llama/Llama-3.1-405B-Instruct"], PROFILES["gpu.l4"]) is None


def test_the_token_is_write_only() -> None:
    spec = DeploymentSpec(hf_model_id="x/y", hf_token="hf_secret_value", hardware_profile="cpu")
    shown = spec.public()
    assert "hf_secret_value" not in str(shown) and "hf_secret_value" not in repr(spec)
    assert shown["hf_token_set"] is True
    assert spec.with_changes({"max_replicas": 3}).hf_token == spec.hf_token


def test_described_errors_read_as_one_line() -> None:
    with pytest.raises(ValidationError) as caught:
        DeploymentSpec.model_validate({"hf_model_id": "x/y", "min_replicas": 5, "max_replicas": 1})
    assert describe_errors(caught.value.errors()) == "min_replicas (5) must not exceed max_replicas (1)"


def test_a_field_is_named_once_in_a_described_error() -> None:
    with pytest.raises(ValidationError) as caught:
        DeploymentSpec.model_validate({"hf_model_id": "meta-llama/Llama-3.1-70B-Instruct",
                                       "hardware_profile": "gpu.l4"})
    described = describe_errors(caught.value.errors())
    assert described.startswith("hf_model_id: meta-llama/Llama-3.1-70B-Instruct needs about 141.2 GB")
    assert described.count("hf_model_id") == 1
    assert error_fields(caught.value.errors())[0]["field"] == "hf_model_id"


def test_an_update_can_change_every_spec_field_but_the_identity_ones() -> None:
    from inferstack.spec import DeploymentUpdate

    # A field added to the spec must be patchable too (or be declared part of the identity here).
    identity = {"name", "hf_model_id", "task", "engine"}
    assert set(DeploymentUpdate.model_fields) - {"immediate_scale_down"} == set(DeploymentSpec.model_fields) - identity
