#!/usr/bin/env python3
"""Generates tests/fixtures/config/<case>/{config.json,expected.json}.

config.json is a realistic Hugging Face config (the Hub files of Jamba-v0.1, Jamba-1.5-Mini,
mamba-130m-hf, falcon-mamba-7b and Mixtral-8x7B as described in shared/spec/model_math.md,
plus small and transformers-v5-style variants). expected.json holds what `transformers`
itself derives from that file, loaded with AutoConfig: the resolved dt_rank, d_inner,
num_key_value_heads, head_dim, rope theta and the per-layer schedule
(`layers_block_type` / `layers_num_experts` for Jamba). The C++ test
tests/engine/config/model_config_test.cc compares ParseModelConfig against these values, so
the reference is transformers, not our own parser.

Usage (needs the `transformers` PyPI package; CI only reads the committed output):
    python3 tools/gen_config_fixtures.py [--out tests/fixtures/config]
"""

import argparse
import json
import math
import os
import pathlib
import tempfile

from transformers import AutoConfig

JAMBA_V0_1 = {
    "architectures": ["JambaForCausalLM"],
    "attention_dropout": 0.0,
    "attn_layer_offset": 4,
    "attn_layer_period": 8,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "expert_layer_offset": 1,
    "expert_layer_period": 2,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "mamba_conv_bias": True,
    "mamba_d_conv": 4,
    "mamba_d_state": 16,
    "mamba_dt_rank": 256,
    "mamba_expand": 2,
    "mamba_proj_bias": False,
    "max_position_embeddings": 262144,
    "model_type": "jamba",
    "num_attention_heads": 32,
    "num_experts": 16,
    "num_experts_per_tok": 2,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "num_logits_to_keep": 1,
    "output_router_logits": False,
    "pad_token_id": 0,
    "rms_norm_eps": 1e-06,
    "router_aux_loss_coef": 0.001,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.40.0.dev0",
    "use_cache": True,
    "use_mamba_kernels": True,
    "vocab_size": 65536,
}

JAMBA_1_5_MINI = dict(JAMBA_V0_1, eos_token_id=[2, 518], transformers_version="4.44.0")

# ai21labs/AI21-Jamba-1.5-Large: the Mini's layout at 72 layers (9 Jamba blocks) and twice the
# width; 398B parameters, 94B active.
JAMBA_1_5_LARGE = dict(
    JAMBA_1_5_MINI,
    hidden_size=8192,
    intermediate_size=24576,
    mamba_dt_rank=512,
    num_attention_heads=64,
    num_hidden_layers=72,
)

# Shape of ai21labs/Jamba-tiny-random; dt_rank "auto" (ceil(128 / 16) = 8).
JAMBA_TINY = dict(
    JAMBA_V0_1,
    hidden_size=128,
    intermediate_size=352,
    num_hidden_layers=8,
    num_attention_heads=2,
    num_key_value_heads=1,
    attn_layer_period=4,
    attn_layer_offset=2,
    num_experts=4,
    mamba_dt_rank="auto",
    vocab_size=1024,
    max_position_embeddings=4096,
)
del JAMBA_TINY["num_experts"]
JAMBA_TINY["num_local_experts"] = 4  # the Gen C alias

# One expert: every layer gets a dense MLP (Jamba-Reasoning-3B style), tied embeddings.
JAMBA_DENSE = dict(
    JAMBA_V0_1,
    hidden_size=96,
    intermediate_size=200,
    num_hidden_layers=6,
    num_attention_heads=6,
    num_key_value_heads=2,
    attn_layer_period=3,
    attn_layer_offset=0,
    num_experts=1,
    num_experts_per_tok=1,
    mamba_dt_rank="auto",
    mamba_expand=3,
    mamba_proj_bias=True,
    mamba_conv_bias=False,
    tie_word_embeddings=True,
    rms_norm_eps=1e-5,
    vocab_size=512,
)

MAMBA_130M = {
    "architectures": ["MambaForCausalLM"],
    "bos_token_id": 0,
    "conv_kernel": 4,
    "d_inner": 1536,
    "d_model": 768,
    "eos_token_id": 0,
    "expand": 2,
    "fused_add_norm": True,
    "hidden_act": "silu",
    "hidden_size": 768,
    "initializer_range": 0.1,
    "intermediate_size": 1536,
    "layer_norm_epsilon": 1e-05,
    "model_type": "mamba",
    "n_layer": 24,
    "num_hidden_layers": 24,
    "pad_token_id": 0,
    "pad_vocab_size_multiple": 8,
    "rescale_prenorm_residual": False,
    "residual_in_fp32": True,
    "rms_norm": True,
    "ssm_cfg": {},
    "state_size": 16,
    "time_step_floor": 0.0001,
    "time_step_init_scheme": "random",
    "time_step_max": 0.1,
    "time_step_min": 0.001,
    "time_step_rank": 48,
    "time_step_scale": 1.0,
    "torch_dtype": "float32",
    "transformers_version": "4.39.0.dev0",
    "use_bias": False,
    "use_cache": True,
    "use_conv_bias": True,
    "vocab_size": 50280,
}

# No intermediate_size (-> int(expand * H)), dt rank "auto" (-> 48), no tie key (-> tied).
MAMBA_AUTO = {
    k: v
    for k, v in MAMBA_130M.items()
    if k not in ("intermediate_size", "d_inner", "tie_word_embeddings")
}
MAMBA_AUTO.update(time_step_rank="auto", expand=3, use_bias=True, use_conv_bias=False)

FALCON_MAMBA_7B = {
    "architectures": ["FalconMambaForCausalLM"],
    "bos_token_id": 0,
    "conv_kernel": 4,
    "eos_token_id": 11,
    "expand": 16,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.1,
    "intermediate_size": 8192,
    "layer_norm_epsilon": 1e-05,
    "model_type": "falcon_mamba",
    "num_hidden_layers": 64,
    "pad_token_id": 11,
    "rescale_prenorm_residual": False,
    "residual_in_fp32": True,
    "state_size": 16,
    "tie_word_embeddings": False,
    "time_step_floor": 0.0001,
    "time_step_init_scheme": "random",
    "time_step_max": 0.1,
    "time_step_min": 0.001,
    "time_step_rank": 256,
    "time_step_scale": 1.0,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.45.0.dev0",
    "use_bias": False,
    "use_cache": True,
    "use_conv_bias": True,
    "vocab_size": 65024,
}

FALCON_MAMBA_TINY = dict(
    FALCON_MAMBA_7B, hidden_size=64, num_hidden_layers=2, intermediate_size=128,
    time_step_rank="auto", mixer_rms_eps=1e-5, vocab_size=100, tie_word_embeddings=True)

MIXTRAL_8X7B = {
    "architectures": ["MixtralForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
    "model_type": "mixtral",
    "num_attention_heads": 32,
    "num_experts_per_tok": 2,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "num_local_experts": 8,
    "output_router_logits": False,
    "rms_norm_eps": 1e-05,
    "rope_theta": 1000000.0,
    "router_aux_loss_coef": 0.02,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.36.0.dev0",
    "use_cache": True,
    "vocab_size": 32000,
}

# transformers v5 layout: rope_parameters, explicit head_dim != H / nh, pad null.
MIXTRAL_V5 = {
    "attention_dropout": 0.0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "head_dim": 32,
    "hidden_act": "silu",
    "hidden_size": 160,
    "initializer_range": 0.02,
    "intermediate_size": 256,
    "max_position_embeddings": 2048,
    "model_type": "mixtral",
    "num_attention_heads": 4,
    "num_experts_per_tok": 3,
    "num_hidden_layers": 3,
    "num_key_value_heads": 2,
    "num_local_experts": 4,
    "output_router_logits": False,
    "pad_token_id": None,
    "rms_norm_eps": 1e-05,
    "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
    "router_aux_loss_coef": 0.001,
    "router_jitter_noise": 0.0,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "transformers_version": "5.23.0",
    "use_cache": True,
    "vocab_size": 1000,
}

CASES = {
    "jamba_v0_1": JAMBA_V0_1,
    "jamba_1_5_mini": JAMBA_1_5_MINI,
    "jamba_1_5_large": JAMBA_1_5_LARGE,
    "jamba_tiny": JAMBA_TINY,
    "jamba_dense": JAMBA_DENSE,
    "mamba_130m": MAMBA_130M,
    "mamba_auto": MAMBA_AUTO,
    "falcon_mamba_7b": FALCON_MAMBA_7B,
    "falcon_mamba_tiny": FALCON_MAMBA_TINY,
    "mixtral_8x7b": MIXTRAL_8X7B,
    "mixtral_v5": MIXTRAL_V5,
}


def eos_list(eos):
    if eos is None:
        return []
    return list(eos) if isinstance(eos, (list, tuple)) else [eos]


def token(t):
    return -1 if t is None else t


def expected(cfg):
    """The derived values as transformers computes them, in ModelConfig's field names."""
    t = cfg.model_type
    e = {
        "model_type": t,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_layers": cfg.num_hidden_layers,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "bos_token_id": token(cfg.bos_token_id),
        "pad_token_id": token(cfg.pad_token_id),
        "eos_token_ids": eos_list(cfg.eos_token_id),
    }
    if t == "jamba":
        e.update(
            intermediate_size=cfg.intermediate_size,
            rms_norm_eps=cfg.rms_norm_eps,
            num_heads=cfg.num_attention_heads,
            num_kv_heads=cfg.num_key_value_heads,
            head_dim=cfg.hidden_size // cfg.num_attention_heads,
            max_position_embeddings=cfg.max_position_embeddings,
            mamba_d_inner=cfg.mamba_expand * cfg.hidden_size,
            mamba_d_state=cfg.mamba_d_state,
            mamba_d_conv=cfg.mamba_d_conv,
            mamba_dt_rank=cfg.mamba_dt_rank,
            mamba_conv_bias=cfg.mamba_conv_bias,
            mamba_proj_bias=cfg.mamba_proj_bias,
            mixer_rms_eps=cfg.rms_norm_eps,
            num_experts=cfg.num_experts,
            num_experts_per_tok=cfg.num_experts_per_tok,
            layers=[
                {"mixer": kind, "ffn": "moe" if n > 1 else "dense"}
                for kind, n in zip(cfg.layers_block_type, cfg.layers_num_experts)
            ],
        )
    elif t in ("mamba", "falcon_mamba"):
        e.update(
            rms_norm_eps=cfg.layer_norm_epsilon,
            mamba_d_inner=cfg.intermediate_size,
            mamba_d_state=cfg.state_size,
            mamba_d_conv=cfg.conv_kernel,
            mamba_dt_rank=cfg.time_step_rank,
            mamba_conv_bias=cfg.use_conv_bias,
            mamba_proj_bias=cfg.use_bias,
            layers=[{"mixer": "mamba", "ffn": "none"}] * cfg.num_hidden_layers,
        )
        if t == "falcon_mamba":
            e["mixer_rms_eps"] = cfg.mixer_rms_eps
    elif t == "mixtral":
        # Same expression as MixtralAttention.
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        e.update(
            intermediate_size=cfg.intermediate_size,
            rms_norm_eps=cfg.rms_norm_eps,
            num_heads=cfg.num_attention_heads,
            num_kv_heads=cfg.num_key_value_heads,
            head_dim=head_dim,
            rope_theta=cfg.rope_parameters["rope_theta"],
            max_position_embeddings=cfg.max_position_embeddings,
            num_experts=cfg.num_local_experts,
            num_experts_per_tok=cfg.num_experts_per_tok,
            layers=[{"mixer": "attention", "ffn": "moe"}] * cfg.num_hidden_layers,
        )
    return e


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = pathlib.Path(__file__).resolve().parent.parent
    parser.add_argument("--out", default=str(root / "tests" / "fixtures" / "config"))
    args = parser.parse_args()
    for name, config in CASES.items():
        out = pathlib.Path(args.out) / name
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        cfg = AutoConfig.from_pretrained(str(out))
        (out / "expected.json").write_text(json.dumps(expected(cfg), indent=1) + "\n")
        print("wrote", out)


if __name__ == "__main__":
    main()
