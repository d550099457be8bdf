#!/usr/bin/env python3
"""Generates tiny random Hugging Face checkpoints plus fp32 reference outputs for golden tests.

Usage:
    python3 tools/make_model_fixtures.py --out tests/fixtures/models [--only NAME ...]

Requirements (CPU only): torch 2.15, transformers 5.23, safetensors 0.8 (see tools/README.md).

For every fixture NAME this writes tests/fixtures/models/NAME/ containing
  * a Hugging Face model folder: config.json (+ generation_config.json) and the weights, either
    `model.safetensors` or a sharded set `model-0000i-of-0000n.safetensors` +
    `model.safetensors.index.json`;
  * `reference.safetensors` with the oracle outputs of transformers (eager attention, eager
    experts, float32 math, no KV/SSM cache):
      prompt_ids            int32 [T]     random non-special ids
      logits                f32   [T, V]  one full-sequence forward (logits_to_keep=0)
      greedy_ids            int32 [32]    greedy continuation of prompt_ids, each step a full
                                          re-run over prompt+generated (no cache)
      greedy_gaps           f32   [32]    top1 - top2 logit gap at each greedy step
      logits_bf16w          f32   [T, V]  like `logits` with the weights selected by the
                                          metadata field `bf16_rule` rounded to bfloat16
      batch_prompt_<i>      int32 [L_i]   i = 0..4, L = 1, 3, 7, 12, 25
      batch_last_logits_<i> f32   [V]     last-position logits of batch_prompt_<i> run alone
    and string metadata (transformers_version, torch_version, seed, min_greedy_gap, bf16_rule,
    router_min_margin, sensitivity_* and a few descriptive fields).

The weights are random but re-initialised with larger-than-default scales so that the logits span
several units (greedy decisions are robust) while activations stay O(1). A seed is accepted only
if every greedy step has a top1-top2 gap > MIN_GREEDY_GAP, every MoE routing decision has a
margin > MIN_ROUTER_MARGIN between the k-th and (k+1)-th router probability, and no special token
is generated. References are computed from the weights exactly as stored (bf16/f16 checkpoints are
rounded first, then run in float32). Finally every checkpoint is reloaded with from_pretrained and
must reproduce all references (max abs diff < 1e-6, identical greedy ids), and the "sensitivity"
variants (a deliberately wrong implementation choice, e.g. a flipped conv kernel) must move the
logits by more than MIN_SENSITIVITY, proving the fixture can detect that mistake.
"""

import argparse
import copy
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
from typing import Callable

import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import (
    AutoModelForCausalLM,
    FalconMambaConfig,
    JambaConfig,
    MambaConfig,
    MixtralConfig,
)
from transformers.models.jamba import modeling_jamba
from transformers.models.mixtral import modeling_mixtral

PROMPT_LEN = 20
GREEDY_STEPS = 32
BATCH_PROMPT_LENS = (1, 3, 7, 12, 25)
MIN_GREEDY_GAP = 1e-3
MIN_ROUTER_MARGIN = 1e-4
MIN_SENSITIVITY = 1e-3
RELOAD_TOLERANCE = 1e-6
MAX_SEED_ATTEMPTS = 50

BF16_RULE = (
    "rounded to bfloat16 (round-to-nearest-even) and back to float32: every parameter with "
    ">= 2 dimensions (embeddings, lm_head, all linear weights incl. in_proj/x_proj/dt_proj/"
    "out_proj/q/k/v/o, dense MLP, router, expert tensors) EXCEPT A_log and conv1d.weight; kept in "
    "float32: conv1d.weight, A_log and every 1-D parameter (norm weights, biases, D, dt_proj.bias)"
)


@dataclasses.dataclass
class Fixture:
    """One checkpoint to generate.

    layout: "hf" = save_pretrained output (Hub per-expert names), single file;
            "fused_sharded" = hand-written fused expert tensors split over several shards.
    config_edits: keys replaced in the written config.json (e.g. to keep "auto").
    sensitivity: name -> function(model, prompt) returning logits of a deliberately wrong variant.
    """

    name: str
    config: transformers.PreTrainedConfig
    storage_dtype: torch.dtype
    layout: str
    base_seed: int
    covers: str
    config_edits: dict = dataclasses.field(default_factory=dict)
    drop_config_keys: tuple = ()
    num_shards: int = 1
    sensitivity: dict = dataclasses.field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Model construction and initialisation.


def build_model(config):
    """Builds a float32 model with the plain (eager) attention and experts implementations."""
    model = AutoModelForCausalLM.from_config(
        copy.deepcopy(config),
        attn_implementation="eager",
        experts_implementation="eager" if _has_experts(config) else None,
        dtype=torch.float32,
    )
    return model.eval()


def _has_experts(config):
    return isinstance(config, MixtralConfig) or (
        isinstance(config, JambaConfig) and config.num_experts > 1
    )


def _normal(gen, shape, std, mean=0.0):
    return torch.randn(shape, generator=gen, dtype=torch.float32) * std + mean


def _uniform(gen, shape, low, high):
    return torch.rand(shape, generator=gen, dtype=torch.float32) * (high - low) + low


def init_params(model, gen):
    """Re-initialises every parameter in place with "interesting but stable" values.

    Scales: linear weights ~ N(0, gain^2 / fan_in) keep activations O(1); lm_head is scaled so
    logits have a std of about 3; norms are 1 +- 0.2; A_log = log(U(0.5, N)); dt bias puts
    softplus(dt) in [1e-3, 1e-1]; conv weights O(0.5).
    """
    config = model.config
    hidden = config.hidden_size
    seen = set()
    for name, param in model.named_parameters():  # shared (tied) parameters appear once
        shape = tuple(param.shape)
        fan_in = shape[-1]
        if name.endswith("A_log"):
            value = torch.log(_uniform(gen, shape, 0.5, float(shape[-1])))
        elif name.endswith(".D"):
            value = _normal(gen, shape, 0.5, mean=0.5)
        elif name.endswith("dt_proj.bias"):
            dt = torch.exp(_uniform(gen, shape, math.log(1e-3), math.log(1e-1)))
            value = dt + torch.log(-torch.expm1(-dt))  # inverse softplus
        elif name.endswith("dt_proj.weight"):
            value = _normal(gen, shape, 0.5 / math.sqrt(fan_in))
        elif name.endswith("conv1d.weight"):
            value = _normal(gen, shape, 0.5)
        elif name.endswith("conv1d.bias"):
            value = _normal(gen, shape, 0.2)
        elif param.dim() == 1 and "norm" in name:
            value = _uniform(gen, shape, 0.8, 1.2)
        elif param.dim() == 1 and name.endswith("bias"):
            value = _normal(gen, shape, 0.1)
        elif name.endswith("lm_head.weight") or (
            "embed" in name and config.tie_word_embeddings
        ):
            value = _normal(gen, shape, 3.0 / math.sqrt(hidden))
        elif "embed" in name:
            value = _normal(gen, shape, 1.0)
        elif "router" in name or name.endswith("gate.weight"):
            value = _normal(gen, shape, 2.0 / math.sqrt(fan_in))
        elif name.endswith(("q_proj.weight", "k_proj.weight")):
            value = _normal(gen, shape, 1.5 / math.sqrt(fan_in))
        elif param.dim() >= 2:
            value = _normal(gen, shape, 1.0 / math.sqrt(fan_in))
        else:
            raise ValueError(f"no init rule for parameter {name} {shape}")
        with torch.no_grad():
            param.copy_(value)
        seen.add(name)
    return seen


def round_params(model, dtype, rule=None):
    """Rounds parameters to `dtype` and back to float32 in place (all, or those matching rule)."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if rule is None or rule(name, param):
                param.copy_(param.to(dtype).to(torch.float32))


def bf16_rule(name, param):
    return param.dim() >= 2 and not name.endswith("A_log") and not name.endswith("conv1d.weight")


# ---------------------------------------------------------------------------------------------
# Reference computation.


class RouterMarginRecorder:
    """Records the smallest gap between the k-th and (k+1)-th router probability of any token.

    A small gap means a tiny numeric difference could change which experts are selected, which
    would make exact golden comparisons flaky.
    """

    def __init__(self, model):
        self.min_margin = math.inf
        self.handles = []
        for module in model.modules():
            if isinstance(module, (modeling_jamba.JambaTopKRouter, modeling_mixtral.MixtralTopKRouter)):
                self.handles.append(module.register_forward_hook(self._hook))

    def _hook(self, module, inputs, outputs):
        router_logits = outputs[0].detach().float()
        probs = torch.softmax(router_logits.reshape(-1, router_logits.shape[-1]), dim=-1)
        k = module.top_k
        if k >= probs.shape[-1]:
            return
        top = torch.topk(probs, k + 1, dim=-1).values
        self.min_margin = min(self.min_margin, float((top[:, k - 1] - top[:, k]).min()))

    def close(self):
        for handle in self.handles:
            handle.remove()


@torch.no_grad()
def full_logits(model, ids):
    """Logits [len(ids), V] of one uncached forward pass over all positions."""
    out = model(input_ids=ids[None, :].long(), use_cache=False, logits_to_keep=0)
    return out.logits[0].float()


@torch.no_grad()
def greedy(model, prompt, steps):
    """Greedy continuation computed by re-running the whole sequence each step (no cache)."""
    seq = prompt.long().clone()
    new_ids, gaps = [], []
    for _ in range(steps):
        last = full_logits(model, seq)[-1]
        top2 = torch.topk(last, 2).values
        gaps.append(float(top2[0] - top2[1]))
        next_id = int(torch.argmax(last))
        new_ids.append(next_id)
        seq = torch.cat([seq, torch.tensor([next_id])])
    return torch.tensor(new_ids, dtype=torch.int32), torch.tensor(gaps, dtype=torch.float32)


def make_prompts(gen, vocab_size, special_ids):
    allowed = torch.tensor([i for i in range(vocab_size) if i not in special_ids])

    def draw(length):
        return allowed[torch.randint(len(allowed), (length,), generator=gen)].to(torch.int32)

    return draw(PROMPT_LEN), [draw(n) for n in BATCH_PROMPT_LENS]


def special_ids_of(config):
    ids = set()
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        value = getattr(config, key, None)
        if value is None:
            continue
        ids.update(value if isinstance(value, list) else [value])
    return ids


def compute_references(model, prompt, batch_prompts):
    """Returns (tensors dict, stats dict) of all oracle outputs for a float32 model."""
    recorder = RouterMarginRecorder(model)
    refs = {"prompt_ids": prompt, "logits": full_logits(model, prompt)}
    refs["greedy_ids"], refs["greedy_gaps"] = greedy(model, prompt, GREEDY_STEPS)
    for i, batch_prompt in enumerate(batch_prompts):
        refs[f"batch_prompt_{i}"] = batch_prompt
        refs[f"batch_last_logits_{i}"] = full_logits(model, batch_prompt)[-1].contiguous()
    bf16_model = copy.deepcopy(model)
    round_params(bf16_model, torch.bfloat16, bf16_rule)
    recorder_bf16 = RouterMarginRecorder(bf16_model)
    refs["logits_bf16w"] = full_logits(bf16_model, prompt)
    recorder.close()
    recorder_bf16.close()
    stats = {
        "min_greedy_gap": float(refs["greedy_gaps"].min()),
        "router_min_margin": min(recorder.min_margin, recorder_bf16.min_margin),
    }
    return refs, stats


# ---------------------------------------------------------------------------------------------
# Checkpoint writing.


def write_checkpoint(fixture, model, folder):
    """Writes config + weights of `model` (already rounded to the storage dtype) into folder."""
    if fixture.layout == "hf":
        to_save = copy.deepcopy(model).to(fixture.storage_dtype)
        to_save.save_pretrained(folder, safe_serialization=True)
    elif fixture.layout == "fused_sharded":
        write_fused_sharded(model, folder, fixture.storage_dtype, fixture.num_shards)
    else:
        raise ValueError(fixture.layout)
    config_path = os.path.join(folder, "config.json")
    with open(config_path) as f:
        config = json.load(f)
    for key in fixture.drop_config_keys:
        config.pop(key, None)
    config.update(fixture.config_edits)
    config["dtype"] = str(fixture.storage_dtype).replace("torch.", "")
    with open(config_path, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")


def _layer_index(name):
    parts = name.split(".")
    return int(parts[2]) if len(parts) > 2 and parts[1] == "layers" else None


def write_fused_sharded(model, folder, dtype, num_shards):
    """Writes the model's native (fused-expert) state dict, split by layer over num_shards files.

    transformers' save_pretrained would convert the fused expert tensors back to the per-expert
    Hub names, so this layout is written directly with the safetensors package.
    """
    os.makedirs(folder, exist_ok=True)
    model.config.save_pretrained(folder)
    if model.generation_config is not None:
        model.generation_config.save_pretrained(folder)
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    num_layers = model.config.num_hidden_layers
    per_shard = math.ceil(num_layers / num_shards)

    def shard_of(name):
        layer = _layer_index(name)
        if layer is None:  # embeddings go first, final norm and lm_head last
            return 0 if "embed" in name else num_shards - 1
        return min(layer // per_shard, num_shards - 1)

    file_names = [
        f"model-{i + 1:05d}-of-{num_shards:05d}.safetensors" for i in range(num_shards)
    ]
    weight_map, shards = {}, [dict() for _ in range(num_shards)]
    for name in sorted(state):
        shards[shard_of(name)][name] = state[name]
        weight_map[name] = file_names[shard_of(name)]
    for file_name, shard in zip(file_names, shards):
        assert shard, f"empty shard {file_name}"
        save_file(shard, os.path.join(folder, file_name), metadata={"format": "pt"})
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
        f.write("\n")


def stored_tensors(folder):
    """name -> (shape, dtype string) of every tensor in the checkpoint's safetensors files."""
    out = {}
    for file_name in sorted(os.listdir(folder)):
        if not file_name.startswith("model") or not file_name.endswith(".safetensors"):
            continue
        with safe_open(os.path.join(folder, file_name), "pt") as f:
            for key in f.keys():
                sl = f.get_slice(key)
                out[key] = (tuple(sl.get_shape()), sl.get_dtype())
    return out


# ---------------------------------------------------------------------------------------------
# Checks.


def check_layout(fixture, folder):
    tensors = stored_tensors(folder)
    dtype_name = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}
    want = dtype_name[fixture.storage_dtype]
    bad = {k: v[1] for k, v in tensors.items() if v[1] != want}
    assert not bad, f"{fixture.name}: unexpected dtypes {bad}"
    names = set(tensors)
    config = fixture.config
    if isinstance(config, JambaConfig):
        moe_layers = [i for i, n in enumerate(config.layers_num_experts) if n > 1]
        for i in range(config.num_hidden_layers):
            prefix = f"model.layers.{i}.feed_forward."
            if i in moe_layers:
                assert prefix + "router.weight" in names
                if fixture.layout == "fused_sharded":
                    assert tensors[prefix + "experts.gate_up_proj"][0] == (
                        config.num_experts, 2 * config.intermediate_size, config.hidden_size)
                    assert tensors[prefix + "experts.down_proj"][0] == (
                        config.num_experts, config.hidden_size, config.intermediate_size)
                else:
                    for e in range(config.num_experts):
                        for proj in ("gate_proj", "up_proj", "down_proj"):
                            assert f"{prefix}experts.{e}.{proj}.weight" in names
            else:
                assert prefix + "gate_proj.weight" in names
                assert not any(n.startswith(prefix + "router") for n in names)
                assert not any(n.startswith(prefix + "experts") for n in names)
        assert "lm_head.weight" in names
    elif isinstance(config, MixtralConfig):
        for i in range(config.num_hidden_layers):
            prefix = f"model.layers.{i}.block_sparse_moe."
            assert prefix + "gate.weight" in names
            for e in range(config.num_local_experts):
                for w in ("w1", "w2", "w3"):
                    assert f"{prefix}experts.{e}.{w}.weight" in names
        assert not any(".mlp." in n for n in names)
    else:  # Mamba / FalconMamba
        assert ("lm_head.weight" in names) == (not config.tie_word_embeddings)
    if fixture.layout == "fused_sharded":
        shard_files = [f for f in os.listdir(folder) if f.startswith("model-")]
        assert len(shard_files) >= 2, shard_files
        assert os.path.exists(os.path.join(folder, "model.safetensors.index.json"))
    return tensors


def reload_and_verify(fixture, folder, refs):
    """Reloads the written folder with from_pretrained and re-derives every reference."""
    kwargs = dict(dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    if _has_experts(fixture.config):
        kwargs["experts_implementation"] = "eager"
    model, info = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    model.eval()
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        assert not info[key], f"{fixture.name}: reload {key}: {info[key]}"
    for name, param in model.named_parameters():
        assert param.dtype == torch.float32, name
    prompt = refs["prompt_ids"]
    batch_prompts = [refs[f"batch_prompt_{i}"] for i in range(len(BATCH_PROMPT_LENS))]
    again, _ = compute_references(model, prompt, batch_prompts)
    worst = 0.0
    for key, value in refs.items():
        if key == "greedy_ids":
            assert torch.equal(again[key], value), f"{fixture.name}: greedy ids differ on reload"
        elif value.is_floating_point():
            worst = max(worst, float((again[key] - value).abs().max()))
    assert worst < RELOAD_TOLERANCE, f"{fixture.name}: reload max abs diff {worst}"
    return model, worst


def run_sensitivity(fixture, model, refs):
    """Max |logits - logits of a deliberately wrong variant| for each configured variant."""
    results = {}
    for name, variant in fixture.sensitivity.items():
        logits = variant(model, refs["prompt_ids"])
        diff = float((logits - refs["logits"]).abs().max())
        assert diff > MIN_SENSITIVITY, f"{fixture.name}: variant {name} undetectable ({diff})"
        results[name] = diff
    return results


# Sensitivity variants -------------------------------------------------------------------------


def variant_config(**changes):
    """Same weights, config fields changed (e.g. a default the engine might wrongly assume)."""

    def run(model, prompt):
        config = copy.deepcopy(model.config)
        for key, value in changes.items():
            if key == "rope_theta":
                config.rope_parameters = dict(config.rope_parameters, rope_theta=value)
            else:
                setattr(config, key, value)
        other = build_model(config)
        other.load_state_dict(model.state_dict())
        return full_logits(other, prompt)

    return run


def variant_flipped_conv(model, prompt):
    """Pitfall 3: convolution instead of cross-correlation (kernel taps reversed)."""
    other = copy.deepcopy(model)
    with torch.no_grad():
        for name, param in other.named_parameters():
            if name.endswith("conv1d.weight"):
                param.copy_(torch.flip(param, dims=[-1]))
    return full_logits(other, prompt)


def _patched_router_forward(renormalize):
    def forward(self, hidden_states):
        hidden_states = hidden_states.reshape(-1, self.hidden_dim)
        router_logits = torch.nn.functional.linear(hidden_states, self.weight)
        probs = torch.softmax(router_logits.float(), dim=-1)
        top_value, top_index = torch.topk(probs, self.top_k, dim=-1)
        if renormalize:
            top_value = top_value / top_value.sum(dim=-1, keepdim=True)
        return router_logits, top_value.to(hidden_states.dtype), top_index

    return forward


def variant_router(router_class, renormalize):
    """Pitfall 10: Jamba must not renormalise the top-k probabilities; Mixtral must."""

    def run(model, prompt):
        original = router_class.forward
        router_class.forward = _patched_router_forward(renormalize)
        try:
            return full_logits(model, prompt)
        finally:
            router_class.forward = original

    return run


def variant_no_residual_fp32(model, prompt):
    """Pitfall 15 is invisible in fp32; instead check that Mamba's D skip matters (pitfall 5)."""
    other = copy.deepcopy(model)
    with torch.no_grad():
        for name, param in other.named_parameters():
            if name.endswith(".D"):
                param.zero_()
    return full_logits(other, prompt)


# ---------------------------------------------------------------------------------------------
# The fixtures.


def fixtures():
    jamba_common = dict(use_mamba_kernels=False, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    conv_flip = {"conv_kernel_flipped": variant_flipped_conv}
    jamba_renorm = {
        "moe_topk_renormalized": variant_router(modeling_jamba.JambaTopKRouter, True)
    }
    return [
        Fixture(
            name="jamba_moe_gqa",
            config=JambaConfig(
                vocab_size=256, hidden_size=32, intermediate_size=16, num_hidden_layers=6,
                num_attention_heads=4, num_key_value_heads=2,
                attn_layer_period=3, attn_layer_offset=1,
                expert_layer_period=2, expert_layer_offset=0,
                num_experts=4, num_experts_per_tok=2,
                mamba_d_state=8, mamba_d_conv=4, mamba_expand=2, mamba_dt_rank=4,
                mamba_conv_bias=True, mamba_proj_bias=False, **jamba_common),
            storage_dtype=torch.float32, layout="hf", base_seed=1000,
            covers=("Jamba hybrid with MoE + GQA (4 q / 2 kv heads, hd 8); attention at layers "
                    "1,4 (period 3 offset 1), MoE at 0,2,4 (period 2 offset 0) so layer 4 is "
                    "attention+MoE and layer 1 attention+dense; explicit mamba_dt_rank 4 (auto "
                    "would be 2); per-expert Hub names; F32 single file. Pitfalls 1,2,3,5,6,7,"
                    "8,9,10,11,14,18,23"),
            sensitivity={**conv_flip, **jamba_renorm},
        ),
        Fixture(
            name="jamba_auto_dtrank",
            config=JambaConfig(
                vocab_size=256, hidden_size=40, intermediate_size=24, num_hidden_layers=6,
                num_attention_heads=4, num_key_value_heads=2,
                attn_layer_period=2, attn_layer_offset=0,
                expert_layer_period=3, expert_layer_offset=1,
                num_experts=4, num_experts_per_tok=3,
                mamba_d_state=8, mamba_d_conv=4, mamba_expand=2, mamba_dt_rank="auto",
                mamba_conv_bias=True, mamba_proj_bias=False, **jamba_common),
            storage_dtype=torch.bfloat16, layout="fused_sharded", num_shards=3, base_seed=2000,
            covers=("Jamba with mamba_dt_rank \"auto\" in config.json (= ceil(40/16) = 3), "
                    "hidden 40 / head_dim 10, attention at 0,2,4 (period 2 offset 0; layer 0 is "
                    "attention), MoE at 1,4 (period 3 offset 1), top-3 of 4 experts; FUSED "
                    "expert tensors gate_up_proj [E,2I,H] (gate rows first) / down_proj [E,H,I]; "
                    "BF16 storage; 3 shards + index. Pitfalls 1,10,11,18"),
            config_edits={"mamba_dt_rank": "auto"},
            sensitivity={**conv_flip, **jamba_renorm},
        ),
        Fixture(
            name="jamba_dense",
            config=JambaConfig(
                vocab_size=256, hidden_size=32, intermediate_size=48, num_hidden_layers=4,
                num_attention_heads=4, num_key_value_heads=1,
                attn_layer_period=4, attn_layer_offset=3,
                expert_layer_period=2, expert_layer_offset=1,
                num_experts=1, num_experts_per_tok=2,
                mamba_d_state=8, mamba_d_conv=4, mamba_expand=2, mamba_dt_rank=8,
                mamba_conv_bias=False, mamba_proj_bias=True, **jamba_common),
            storage_dtype=torch.float16, layout="hf", base_seed=3000,
            covers=("Jamba with num_experts 1 (every layer a dense MLP, no router), attention "
                    "only at the last layer 3 (period 4 offset 3), MQA (4 q heads / 1 kv head), "
                    "mamba_proj_bias TRUE (in_proj.bias/out_proj.bias present), mamba_conv_bias "
                    "FALSE (no conv1d.bias), dt_rank 8; F16 storage. Pitfalls 11 (dense names), "
                    "14"),
            sensitivity=dict(conv_flip),
        ),
        Fixture(
            name="mamba",
            config=MambaConfig(
                vocab_size=384, hidden_size=32, state_size=8, num_hidden_layers=4, expand=2,
                conv_kernel=4, use_bias=False, use_conv_bias=True, time_step_rank="auto",
                tie_word_embeddings=True, pad_token_id=0, bos_token_id=0, eos_token_id=0),
            storage_dtype=torch.float32, layout="hf", base_seed=4000,
            covers=("MambaForCausalLM, tied embeddings (lm_head.weight absent from the file), "
                    "use_bias false, time_step_rank auto (= 2), no dt/B/C norms, fp32 residual. "
                    "Pitfalls 1,2,3,5,7,8,15,17"),
            sensitivity={**conv_flip, "d_skip_zeroed": variant_no_residual_fp32},
        ),
        Fixture(
            name="falcon_mamba",
            config=FalconMambaConfig(
                vocab_size=384, hidden_size=32, state_size=8, num_hidden_layers=3, expand=16,
                intermediate_size=64, conv_kernel=4, use_bias=False, use_conv_bias=True,
                time_step_rank=4, tie_word_embeddings=False, mixer_rms_eps=1e-3,
                layer_norm_epsilon=1e-5, pad_token_id=11, bos_token_id=0, eos_token_id=11),
            storage_dtype=torch.float32, layout="hf", base_seed=5000,
            covers=("FalconMambaForCausalLM, untied lm_head, weightless dt/B/C RMSNorms with "
                    "non-default mixer_rms_eps 1e-3, config expand 16 but intermediate_size 64 "
                    "(= 2*H, like falcon-mamba-7b: size Di from tensors), time_step_rank 4, "
                    "bos 0 / eos+pad 11. Pitfalls 8,12,16,17"),
            sensitivity={**conv_flip,
                         "mixer_rms_eps_default_1e-6": variant_config(mixer_rms_eps=1e-6)},
        ),
        Fixture(
            name="mixtral",
            config=MixtralConfig(
                vocab_size=256, hidden_size=32, intermediate_size=32, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
                num_experts_per_tok=2, rms_norm_eps=1e-5, max_position_embeddings=4096,
                rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
                pad_token_id=None, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False),
            storage_dtype=torch.float32, layout="hf", base_seed=6000,
            covers=("MixtralForCausalLM, GQA 4/2 (hd 8), 4 experts top-2 with renormalisation, "
                    "RoPE theta 5e5 written Hub-style as top-level rope_theta, Hub per-expert "
                    "names block_sparse_moe.gate / experts.e.w1,w2,w3. Pitfalls 9,10,12,14,18"),
            drop_config_keys=("rope_parameters",),
            config_edits={"rope_theta": 500000.0},
            sensitivity={
                "rope_theta_default_1e6": variant_config(rope_theta=1e6),
                "rope_theta_1e4": variant_config(rope_theta=1e4),
                "moe_topk_not_renormalized":
                    variant_router(modeling_mixtral.MixtralTopKRouter, False),
            },
        ),
    ]


# ---------------------------------------------------------------------------------------------


def pick_seed(fixture):
    """Tries seeds until the references are numerically robust; returns (seed, model, refs, stats)."""
    special = special_ids_of(fixture.config)
    for attempt in range(MAX_SEED_ATTEMPTS):
        seed = fixture.base_seed + attempt
        gen = torch.Generator().manual_seed(seed)
        model = build_model(fixture.config)
        initialised = init_params(model, gen)
        assert initialised == {n for n, _ in model.named_parameters()}
        round_params(model, fixture.storage_dtype)
        prompt, batch_prompts = make_prompts(gen, fixture.config.vocab_size, special)
        refs, stats = compute_references(model, prompt, batch_prompts)
        problems = []
        if stats["min_greedy_gap"] <= MIN_GREEDY_GAP:
            problems.append(f"greedy gap {stats['min_greedy_gap']:.2e}")
        if stats["router_min_margin"] <= MIN_ROUTER_MARGIN:
            problems.append(f"router margin {stats['router_min_margin']:.2e}")
        if special & set(refs["greedy_ids"].tolist()):
            problems.append("special id generated")
        if not torch.isfinite(refs["logits"]).all():
            problems.append("non-finite logits")
        if not problems:
            return seed, model, refs, stats
        print(f"  seed {seed} rejected: {', '.join(problems)}")
    raise RuntimeError(f"{fixture.name}: no acceptable seed in {MAX_SEED_ATTEMPTS} attempts")


def make_fixture(fixture, out_dir):
    print(f"== {fixture.name}")
    seed, model, refs, stats = pick_seed(fixture)
    folder = os.path.join(out_dir, fixture.name)
    tmp = tempfile.mkdtemp(prefix=fixture.name + ".", dir=out_dir)
    try:
        write_checkpoint(fixture, model, tmp)
        tensors = check_layout(fixture, tmp)
        reloaded, reload_diff = reload_and_verify(fixture, tmp, refs)
        sensitivity = run_sensitivity(fixture, reloaded, refs)
        metadata = {
            "fixture": fixture.name,
            "model_type": fixture.config.model_type,
            "covers": fixture.covers,
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "seed": str(seed),
            "storage_dtype": str(fixture.storage_dtype).replace("torch.", ""),
            "weights_layout": fixture.layout,
            "prompt_len": str(PROMPT_LEN),
            "vocab_size": str(fixture.config.vocab_size),
            "min_greedy_gap": repr(stats["min_greedy_gap"]),
            "router_min_margin": repr(stats["router_min_margin"]),
            "reload_max_abs_diff": repr(reload_diff),
            "bf16_rule": BF16_RULE,
            "greedy_rule": ("argmax of the last position of an uncached full forward over "
                            "prompt+generated; exactly 32 tokens, no EOS stopping"),
            "math": "float32, eager attention, eager experts, no cache",
        }
        for name, diff in sensitivity.items():
            metadata[f"sensitivity_{name}"] = repr(diff)
        tensors_out = {k: v.contiguous() for k, v in refs.items()}
        save_file(tensors_out, os.path.join(tmp, "reference.safetensors"), metadata=metadata)
        if os.path.exists(folder):
            shutil.rmtree(folder)
        os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    logits = refs["logits"]
    print(f"  seed {seed}  T={len(refs['prompt_ids'])} V={logits.shape[1]}  "
          f"min greedy gap {stats['min_greedy_gap']:.4f}  router margin "
          f"{stats['router_min_margin']:.4g}  logits std {float(logits.std()):.2f} "
          f"range [{float(logits.min()):.1f}, {float(logits.max()):.1f}]  "
          f"bf16w max diff {float((refs['logits_bf16w'] - logits).abs().max()):.3g}")
    print(f"  greedy {refs['greedy_ids'].tolist()}")
    print(f"  reload max diff {reload_diff:.3g}; sensitivity "
          + ", ".join(f"{k}={v:.3g}" for k, v in sensitivity.items()))
    print(f"  {len(tensors)} tensors, folder {size / 1024:.1f} KiB")
    return tensors


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output folder, e.g. tests/fixtures/models")
    parser.add_argument("--only", nargs="*", help="fixture names to (re)generate")
    parser.add_argument("--list-tensors", action="store_true", help="print every stored tensor")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    os.makedirs(args.out, exist_ok=True)
    selected = fixtures()
    if args.only:
        unknown = set(args.only) - {f.name for f in selected}
        if unknown:
            parser.error(f"unknown fixtures {sorted(unknown)}")
        selected = [f for f in selected if f.name in args.only]
    for fixture in selected:
        tensors = make_fixture(fixture, args.out)
        if args.list_tensors:
            for name in sorted(tensors):
                print(f"    {name} {list(tensors[name][0])} {tensors[name][1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
