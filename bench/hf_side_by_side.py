#!/usr/bin/env python3
"""The same model through Hugging Face transformers, for a side-by-side with jamba-bench.

Builds the config's ForCausalLM class (JambaForCausalLM, MambaForCausalLM, MixtralForCausalLM,
...) from a config.json with jamba-bench's `--set KEY=VALUE` overrides, random weights in bf16
(or f32) on the chosen device, and times it the way jamba-bench's engine table does: for each
batch size, one forward of `--prompt-len` random tokens per sequence (prefill tokens/s), two
warm-up decode steps, then `--decode-steps` timed single-token steps through the model's cache
(decode tokens/s), the device synchronised around each timing. Before timing, the cached decode
path is checked against a full forward of the same tokens (so the loop really uses the cache),
unless --no-check.

Mamba layers use the `mamba_ssm` / `causal_conv1d` kernels when they are installed and the
reference PyTorch path otherwise; the output says which, since it dominates the figures.

Usage (the README's GPU decode command, side by side):
  python3 bench/hf_side_by_side.py --config tests/fixtures/config/jamba_v0_1/config.json \\
      --set num_hidden_layers=16 --batches 1,4,16 --decode-steps 64 --device cuda
Needs torch and transformers (the GPU machines' image has both); not part of CI.
"""

import argparse
import importlib.util
import json
import sys
import time


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="config.json (random weights)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (JSON value, else a string); repeatable")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    p.add_argument("--weights", default="bf16", choices=["bf16", "f32"])
    p.add_argument("--batches", default="1,4,16", help="batch sizes, N,N,...")
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--decode-steps", type=int, default=16)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--no-check", action="store_true",
                   help="skip the check of cached decode against a full forward")
    a = p.parse_args(argv)
    try:
        a.batch_sizes = [int(b) for b in a.batches.split(",")]
    except ValueError:
        p.error(f"--batches: expected N,N,..., got {a.batches!r}")
    if any(b < 1 for b in a.batch_sizes) or a.prompt_len < 1 or a.decode_steps < 1:
        p.error("--batches, --prompt-len and --decode-steps must be >= 1")
    return a


def load_config(path, overrides):
    with open(path) as f:
        fields = json.load(f)
    for kv in overrides:
        key, eq, value = kv.partition("=")
        if not eq or not key:
            raise SystemExit(f"hf_side_by_side: --set: expected KEY=VALUE, got {kv!r}")
        try:
            fields[key] = json.loads(value)
        except json.JSONDecodeError:
            fields[key] = value
    return fields


def main(argv):
    a = parse_args(argv)
    import torch
    import transformers

    fields = load_config(a.config, a.set)
    fast_mamba = (importlib.util.find_spec("mamba_ssm") is not None
                  and importlib.util.find_spec("causal_conv1d") is not None)
    if "use_mamba_kernels" in fields:
        fields["use_mamba_kernels"] = fast_mamba
    config = transformers.AutoConfig.for_model(**fields)
    dtype = torch.bfloat16 if a.weights == "bf16" else torch.float32
    device = torch.device(a.device)
    torch.manual_seed(a.seed)
    with device:
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.eval()
    params = sum(p.numel() for p in model.parameters())

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    vocab = config.vocab_size
    gen = torch.Generator(device="cpu").manual_seed(a.seed)

    def tokens(batch, n):
        return torch.randint(0, vocab, (batch, n), generator=gen).to(device)

    def step(ids, cache):
        out = model(input_ids=ids, past_key_values=cache, use_cache=True)
        return out.logits[:, -1, :], out.past_key_values

    with torch.inference_mode():
        if not a.no_check:
            # Cached decode == full forward on the same tokens (max |diff| of the last logits).
            ids = tokens(2, 8)
            last, cache = step(ids[:, :6], None)
            for t in (6, 7):
                last, cache = step(ids[:, t:t + 1], cache)
            full = model(input_ids=ids, use_cache=False).logits[:, -1, :]
            diff = (last.float() - full.float()).abs().max().item()
            scale = full.float().abs().max().item()
            tol = (2e-2 if dtype == torch.bfloat16 else 1e-4) * max(scale, 1.0)
            if not diff <= tol:
                raise SystemExit(f"hf_side_by_side: cached decode differs from a full forward "
                                 f"by {diff} (tolerance {tol}): the timing loop is not valid")

        print(f"model: {a.config} (random weights)  {type(model).__name__}  "
              f"transformers {transformers.__version__}  torch {torch.__version__}")
        print(f"parameters: {params / 1e6:.1f} M  weights {a.weights}  device {device}  "
              f"mamba kernels: {'mamba_ssm' if fast_mamba else 'reference PyTorch'}")
        print(f"\ntransformers (prompt {a.prompt_len} tokens, {a.decode_steps} decode steps)")
        print(f"  {'batch':>6} {'prefill tok/s':>16} {'decode tok/s':>16} {'decode ms/step':>16}")
        for batch in a.batch_sizes:
            prompt = tokens(batch, a.prompt_len)
            sync()
            t0 = time.perf_counter()
            _, cache = step(prompt, None)
            sync()
            prefill = batch * a.prompt_len / (time.perf_counter() - t0)
            for _ in range(2):  # warm-up
                _, cache = step(tokens(batch, 1), cache)
            sync()
            t0 = time.perf_counter()
            for _ in range(a.decode_steps):
                _, cache = step(tokens(batch, 1), cache)
            sync()
            secs = time.perf_counter() - t0
            print(f"  {batch:>6} {prefill:>16.1f} {batch * a.decode_steps / secs:>16.1f} "
                  f"{1e3 * secs / a.decode_steps:>16.2f}", flush=True)
            del cache
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
