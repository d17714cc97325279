"""The hardware-profile and model catalogues: what a replica runs on and what fits where.

One table each, read by the spec (validation), the CLI (`inferstack models`), the autoscaler (price
cap), the Pulumi targets (instance types, node selectors) and the policy pack (budgets).
Prices are on-demand list prices per GPU-hour in USD, a planning figure; a team with negotiated
prices overrides them through `max_price_per_hour` on the deployment.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict


class NodeShape(BaseModel):
    """A machine's size, as a node reports capacity: vCPUs, memory and GPUs."""

    model_config = ConfigDict(frozen=True)

    cpus: int
    memory_gib: int
    gpus: int


# Of a node's share per GPU, what a replica pod asks: the rest is the kubelet's reserve and the
# daemon sets (device plugin, CNI, kube-proxy). g6.xlarge (4 vCPU, 16 GiB, 1 L4): 3 CPUs and 12 GiB.
POD_SHARE_OF_NODE = 0.75


class HardwareProfile(BaseModel):
    """One GPU type, and how each target realises it."""

    model_config = ConfigDict(frozen=True)

    name: str
    gpu: str
    gpu_memory_gb: float
    price_per_gpu_hour: float
    max_gpus_per_replica: int
    aws_instance_types: dict[int, str]
    """GPUs per replica -> the EC2 instance type that provides exactly that many."""
    k8s_gpu_product: str | None
    """The `nvidia.com/gpu.product` node label GPU nodes of this type carry."""
    smallest_node: NodeShape
    """The smallest machine that carries this GPU (its first instance type): pods are sized to fit it."""

    def price_per_replica_hour(self, gpus_per_replica: int) -> float:
        return self.price_per_gpu_hour * gpus_per_replica

    def pod_size(self, gpus_per_replica: int) -> tuple[int, int]:
        """(CPUs, GiB of memory) a replica pod asks: its GPUs' share of the smallest machine, less the
        node's reserve. gpu.l4 x1 on g6.xlarge -> (3, 12); gpu.a100 x1 on p4d.24xlarge (96 vCPU, 1152
        GiB, 8 GPUs) -> (9, 108). A GPU-less profile is one small replica a node: a quarter of it."""
        node = self.smallest_node
        share = gpus_per_replica / node.gpus if node.gpus else 0.25
        return (max(1, int(node.cpus * share * POD_SHARE_OF_NODE)),
                max(1, int(node.memory_gib * share * POD_SHARE_OF_NODE)))


PROFILES: dict[str, HardwareProfile] = {
    p.name: p
    for p in [
        # `cpu` runs replicas as local processes with no GPU: the embedded default for trying things out.
        HardwareProfile(
            name="cpu", gpu="none", gpu_memory_gb=0, price_per_gpu_hour=0.0, max_gpus_per_replica=1,
            aws_instance_types={1: "c7i.2xlarge"}, smallest_node=NodeShape(cpus=8, memory_gib=16, gpus=0),
            k8s_gpu_product=None,
        ),
        HardwareProfile(
            name="gpu.l4", gpu="NVIDIA L4", gpu_memory_gb=24, price_per_gpu_hour=0.80, max_gpus_per_replica=8,
            aws_instance_types={1: "g6.xlarge", 4: "g6.12xlarge", 8: "g6.48xlarge"},
            smallest_node=NodeShape(cpus=4, memory_gib=16, gpus=1), k8s_gpu_product="NVIDIA-L4",
        ),
        HardwareProfile(
            name="gpu.a10g", gpu="NVIDIA A10G", gpu_memory_gb=24, price_per_gpu_hour=1.01,
            max_gpus_per_replica=8, aws_instance_types={1: "g5.xlarge", 4: "g5.12xlarge", 8: "g5.48xlarge"},
            smallest_node=NodeShape(cpus=4, memory_gib=16, gpus=1), k8s_gpu_product="NVIDIA-A10G",
        ),
        HardwareProfile(
            name="gpu.l40s", gpu="NVIDIA L40S", gpu_memory_gb=48, price_per_gpu_hour=1.86,
            max_gpus_per_replica=8, aws_instance_types={1: "g6e.xlarge", 4: "g6e.12xlarge", 8: "g6e.48xlarge"},
            smallest_node=NodeShape(cpus=4, memory_gib=32, gpus=1), k8s_gpu_product="NVIDIA-L40S",
        ),
        HardwareProfile(
            name="gpu.a100", gpu="NVIDIA A100 40GB", gpu_memory_gb=40, price_per_gpu_hour=4.10,
            max_gpus_per_replica=8, aws_instance_types={8: "p4d.24xlarge"},
            smallest_node=NodeShape(cpus=96, memory_gib=1152, gpus=8), k8s_gpu_product="NVIDIA-A100-SXM4-40GB",
        ),
        HardwareProfile(
            name="gpu.a100-80gb", gpu="NVIDIA A100 80GB", gpu_memory_gb=80, price_per_gpu_hour=5.12,
            max_gpus_per_replica=8, aws_instance_types={8: "p4de.24xlarge"},
            smallest_node=NodeShape(cpus=96, memory_gib=1152, gpus=8), k8s_gpu_product="NVIDIA-A100-SXM4-80GB",
        ),
        HardwareProfile(
            name="gpu.h100", gpu="NVIDIA H100 80GB", gpu_memory_gb=80, price_per_gpu_hour=12.29,
            max_gpus_per_replica=8, aws_instance_types={8: "p5.48xlarge"},
            smallest_node=NodeShape(cpus=192, memory_gib=2048, gpus=8), k8s_gpu_product="NVIDIA-H100-80GB-HBM3",
        ),
        HardwareProfile(
            name="gpu.h200", gpu="NVIDIA H200 141GB", gpu_memory_gb=141, price_per_gpu_hour=7.91,
            max_gpus_per_replica=8, aws_instance_types={8: "p5en.48xlarge"},
            smallest_node=NodeShape(cpus=192, memory_gib=2048, gpus=8), k8s_gpu_product="NVIDIA-H200",
        ),
    ]
}


def aws_instance_type(profile_name: str, gpus_per_replica: int) -> str | None:
    """The smallest EC2 instance type of a profile with at least `gpus_per_replica` GPUs.

    gpu.l4 with 2 GPUs -> g6.12xlarge (4 x L4): EC2 sells L4s in 1, 4 and 8, so a 2-GPU replica takes
    the 4-GPU machine. gpu.a100 with 1 GPU -> p4d.24xlarge: A100s come only in eights.
    """
    sizes = PROFILES[profile_name].aws_instance_types
    fitting = [gpus for gpus in sizes if gpus >= gpus_per_replica]
    return sizes[min(fitting)] if fitting else None


# Bytes a parameter takes in each safetensors dtype (the Hub's names).
DTYPE_BYTES: dict[str, int] = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2,
                               "I16": 2, "U16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I8": 1, "U8": 1, "BOOL": 1}


class ModelSize(BaseModel):
    """What the fit check reads: how large a model's weights are, and in which dtype."""

    model_config = ConfigDict(frozen=True)

    hf_model_id: str
    params_billion: float
    weights_gb: float
    dtype: str = "bf16"

    @classmethod
    def from_parameter_counts(cls, hf_model_id: str, counts: dict[str, int]) -> ModelSize:
        """From safetensors metadata: {"BF16": 68_976_648_192} -> 69.0 B parameters, 138.0 GB of bf16 weights.
        A mixed model (a quantised one keeps some tensors in F16) is named after its largest share."""
        weights = sum(n * DTYPE_BYTES.get(dtype.upper(), 2) for dtype, n in counts.items())
        main = max(counts, key=lambda dtype: counts[dtype]).lower() if counts else "bf16"
        return cls(hf_model_id=hf_model_id, params_billion=sum(counts.values()) / 1e9, weights_gb=weights / 1e9,
                   dtype=main)


class CatalogModel(BaseModel):
    """A popular open model whose size we know, so we can say what fits where before anyone pays."""

    model_config = ConfigDict(frozen=True)

    hf_model_id: str
    params_billion: float
    task: str = "generate"

    @property
    def weights_gb(self) -> float:
        return self.params_billion * 2  # bf16: two bytes a parameter

    def size(self) -> ModelSize:
        return ModelSize(hf_model_id=self.hf_model_id, params_billion=self.params_billion,
                         weights_gb=self.weights_gb)


MODELS: dict[str, CatalogModel] = {
    m.hf_model_id: m
    for m in [
        CatalogModel(hf_model_id="meta-llama/Llama-3.2-1B-Instruct", params_billion=1.24),
        CatalogModel(hf_model_id="meta-llama/Llama-3.2-3B-Instruct", params_billion=3.21),
        CatalogModel(hf_model_id="meta-llama/Llama-3.1-8B-Instruct", params_billion=8.03),
        CatalogModel(hf_model_id="meta-llama/Llama-3.1-70B-Instruct", params_billion=70.6),
        CatalogModel(hf_model_id="meta-llama/Llama-3.1-405B-Instruct", params_billion=405.9),
        CatalogModel(hf_model_id="mistralai/Mistral-7B-Instruct-v0.3", params_billion=7.25),
        CatalogModel(hf_model_id="mistralai/Mixtral-8x7B-Instruct-v0.1", params_billion=46.7),
        CatalogModel(hf_model_id="Qwen/Qwen2.5-7B-Instruct", params_billion=7.62),
        CatalogModel(hf_model_id="Qwen/Qwen2.5-72B-Instruct", params_billion=72.7),
        CatalogModel(hf_model_id="google/gemma-2-9b-it", params_billion=9.24),
        CatalogModel(hf_model_id="microsoft/Phi-3-mini-4k-instruct", params_billion=3.82),
        CatalogModel(hf_model_id="BAAI/bge-large-en-v1.5", params_billion=0.335, task="embed"),
        CatalogModel(hf_model_id="intfloat/e5-mistral-7b-instruct", params_billion=7.11, task="embed"),
    ]
}

# vLLM's default --gpu-memory-utilization is 0.9, and the KV cache needs room beyond the weights:
# we ask for weights <= 80% of the usable memory. Llama-3.1-8B: 16.1 GB <= 0.8 * 0.9 * 24 = 17.3 GB on an L4.
USABLE_MEMORY_FRACTION = 0.9 * 0.8


def fit_problem(model: ModelSize, profile: HardwareProfile, gpus_per_replica: int) -> str | None:
    """Why `model` cannot run on `gpus_per_replica` GPUs of `profile`, or None when it fits."""
    if profile.name == "cpu":
        return None  # local CPU replicas are for small models; host memory is the user's call
    usable = profile.gpu_memory_gb * gpus_per_replica * USABLE_MEMORY_FRACTION
    if model.weights_gb <= usable:
        return None
    needed = math.ceil(model.weights_gb / (profile.gpu_memory_gb * USABLE_MEMORY_FRACTION))
    hint = (
        f"use gpus_per_replica >= {needed}"
        if needed <= profile.max_gpus_per_replica
        else "choose a profile with more GPU memory"
    )
    return (
        f"{model.hf_model_id} needs about {model.weights_gb:.1f} GB for its {model.dtype} weights plus KV cache, "
        f"but {gpus_per_replica} x {profile.gpu} ({profile.gpu_memory_gb:g} GB) leaves {usable:.1f} GB "
        f"usable: {hint}"
    )


def smallest_fitting_gpus(model: CatalogModel, profile: HardwareProfile) -> int | None:
    """The fewest GPUs of `profile` a replica of `model` needs, or None if even the most do not do."""
    for gpus in (1, 2, 4, 8):
        if gpus <= profile.max_gpus_per_replica and fit_problem(model.size(), profile, gpus) is None:
            return gpus
    return None
