#!/usr/bin/env python3
"""Trains the bundled demo model models/jamba-demo: a small Jamba (JambaForCausalLM) on the KJV Bible.

Prerequisites (not needed by the C++ build or its tests, only to regenerate the demo model):
  apt-get install bible-kjv bible-kjv-text   # `bible` program + compressed public-domain KJV text
  pip install torch transformers tokenizers safetensors
(tools/setup.sh installs bible-kjv-text; `bible-kjv` provides the /usr/bin/bible reader.)

What it does:
  1. Dumps the whole King James Version with `bible -f Gen1:1-Rev22:21` (one verse per line, each
     prefixed by its reference, which is stripped). The KJV text (1611) is in the public domain.
  2. Trains a SentencePiece-style byte-fallback BPE with `tokenizers`, in the Jamba style
     (Metaspace "▁" pre-tokenizer without a dummy prefix; <|pad|>=0, <|startoftext|>=1,
     <|endoftext|>=2, <|unk|>=3, then <0x00>..<0xFF>), and saves tokenizer.json and
     tokenizer_config.json so that transformers' AutoTokenizer loads it and prepends BOS.
  3. Trains a scaled-down Jamba (same layer schedule rules as Jamba-v0.1: attention every
     `attn_layer_period` layers at `attn_layer_offset`, MoE every `expert_layer_period` layers at
     `expert_layer_offset`) on CPU with ONE thread, within a wall-clock budget (--minutes).
     The weights live in a stock transformers JambaForCausalLM; only the training forward is our
     own (`fast_forward`): the Mamba selective scan runs as a fused custom autograd function
     instead of HF's per-time-step Python loop, attention uses SDPA, MoE routes by gathering.
     It computes the same function as HF's forward (checked at the end, max |diff| < 1e-3 fp32).
  4. Saves the HF folder (config.json, model.safetensors in bf16, tokenizer files,
     generation_config.json) every --save-every-min minutes and at the end, then verifies the
     saved folder against `fast_forward`, generates samples with transformers and writes
     README.md (model card).

Usage (from the repo root):
  python3 tools/train_demo_model.py                       # 75 min budget, writes models/jamba-demo
  python3 tools/train_demo_model.py --minutes 5 --out /tmp/jd   # quick smoke run
  python3 tools/train_demo_model.py --resume              # continue from tools/.cache/jamba-demo
  python3 tools/train_demo_model.py --finalize-only       # re-verify + rewrite the model card
Intermediate data and the resumable training state go to tools/.cache/jamba-demo (git-ignored).
"""

import argparse
import copy
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE_DIR = os.path.join(REPO_ROOT, "tools", ".cache", "jamba-demo")

SPECIAL_TOKENS = ["<|pad|>", "<|startoftext|>", "<|endoftext|>", "<|unk|>"]
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
NEWLINE = "\n"

# Verse lines look like "Ge1:1 In the beginning ..." or "1Sm3:4 ...".
VERSE_RE = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def load_kjv():
    """Returns a list of (book, chapter, text) for every verse of the KJV, in canonical order."""
    if shutil.which("bible") is None:
        sys.exit("error: the `bible` program is missing; run: apt-get install bible-kjv bible-kjv-text")
    out = subprocess.run(
        ["bible", "-f", "Gen1:1-Rev22:21"], check=True, capture_output=True, text=True
    ).stdout
    verses = []
    for line in out.splitlines():
        m = VERSE_RE.match(line.strip())
        if not m:
            continue
        text = " ".join(m.group(4).split())  # collapse the rare double spaces
        verses.append((m.group(1), int(m.group(2)), text))
    if len(verses) != 31102:
        sys.exit(f"error: expected 31102 KJV verses from `bible`, parsed {len(verses)}")
    return verses


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------


def train_tokenizer(texts, vocab_size, out_dir):
    """Trains the byte-fallback BPE and writes tokenizer.json + tokenizer_config.json to out_dir."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<|unk|>", byte_fallback=True, fuse_unk=True))
    # Jamba: "▁" word-boundary marks, no dummy space prefix ("hello" at the start stays "hello").
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS + byte_tokens,
        initial_alphabet=[NEWLINE],
        limit_alphabet=200,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))
    assert tok.token_to_id("<0x00>") == 4 and tok.token_to_id("<0xFF>") == 259
    # BOS is prepended by the post-processor so that both `tokenizers` and transformers add it.
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A",
        pair="<|startoftext|> $A <|startoftext|> $B",
        special_tokens=[("<|startoftext|>", BOS_ID)],
    )
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    added = {
        str(i): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i, t in enumerate(SPECIAL_TOKENS)
    }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|pad|>",
        "unk_token": "<|unk|>",
        "added_tokens_decoder": added,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 262144,
        "padding_side": "left",
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    return tok


def build_streams(verses, tok, heldout_every):
    """Tokenizes verses into two flat id streams (train, validation) plus verse start offsets.

    Each verse is encoded on its own (no special tokens) and followed by the "\n" token; the last
    verse of a book is followed by <|endoftext|> instead. Every `heldout_every`-th chapter goes to
    the validation stream."""
    nl_id = tok.token_to_id(NEWLINE)
    assert nl_id is not None
    enc = tok.encode_batch([v[2] for v in verses], add_special_tokens=False)
    streams = {"train": ([], []), "val": ([], [])}
    chapter_index = -1
    prev_key = None
    for i, (book, chapter, _) in enumerate(verses):
        if (book, chapter) != prev_key:
            chapter_index += 1
            prev_key = (book, chapter)
        split = "val" if chapter_index % heldout_every == heldout_every - 1 else "train"
        ids, starts = streams[split]
        starts.append(len(ids))
        ids.extend(enc[i].ids)
        last_of_book = i + 1 == len(verses) or verses[i + 1][0] != book
        ids.append(EOS_ID if last_of_book else nl_id)
    return {k: (torch.tensor(v[0], dtype=torch.long), torch.tensor(v[1], dtype=torch.long))
            for k, v in streams.items()}


def sample_batch(ids, starts, batch, seq_len, gen):
    """Returns [batch, seq_len + 1] int64: BOS followed by seq_len tokens starting at a verse start."""
    valid = starts[starts + seq_len <= len(ids)]
    pick = valid[torch.randint(len(valid), (batch,), generator=gen)]
    offs = pick[:, None] + torch.arange(seq_len)[None, :]
    bos = torch.full((batch, 1), BOS_ID, dtype=torch.long)
    return torch.cat([bos, ids[offs]], dim=1)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


def make_config(args, vocab_size):
    from transformers import JambaConfig

    return JambaConfig(
        vocab_size=vocab_size,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        attn_layer_period=args.attn_period,
        attn_layer_offset=args.attn_offset,
        expert_layer_period=2,
        expert_layer_offset=1,
        num_experts=args.experts,
        num_experts_per_tok=2,
        mamba_d_state=16,
        mamba_d_conv=4,
        mamba_expand=2,
        mamba_dt_rank="auto",
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        use_mamba_kernels=False,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        max_position_embeddings=262144,
    )


def init_mamba_dt(model, dt_min=1e-3, dt_max=1e-1):
    """Mamba-style dt init: softplus(dt_proj.bias) log-uniform in [dt_min, dt_max] (HF leaves 0)."""
    from transformers.models.jamba.modeling_jamba import JambaMambaMixer

    g = torch.Generator().manual_seed(1234)
    for m in model.modules():
        if isinstance(m, JambaMambaMixer):
            d = m.dt_proj.bias.shape[0]
            dt = torch.exp(
                torch.rand(d, generator=g) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
            )
            with torch.no_grad():
                m.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus


class SelectiveScan(torch.autograd.Function):
    """y[b,t,d] = sum_n h_t[b,d,n] * C[b,t,n] with h_t = exp(delta_t*A) * h_{t-1} + delta_t*u_t*B_t,
    h_0 = 0. Shapes: u, delta [B, L, D]; A [D, N]; Bm, Cm [B, L, N]; all fp32. Same recurrence as
    HF's mamba_selective_scan (without the D skip and the gate, which stay in autograd).

    Both time loops work only on [B, D, N] slices (cache-resident): exp(delta_t*A), the readout and
    every gradient contribution are computed per step, so that the only [B, L, D, N] tensor is the
    saved state history `hs` (needed for h_{t-1} in backward). Materialising dA / dL/dh for all
    steps and reducing them with einsums afterwards was ~4x slower on one CPU thread (memory
    bound)."""

    @staticmethod
    def forward(ctx, u, delta, A, Bm, Cm):
        bsz, seq, dim = u.shape
        n = A.shape[1]
        du = delta * u  # [B, L, D]
        hs = torch.empty(bsz, seq, dim, n, dtype=u.dtype)
        y = torch.empty(bsz, seq, dim, dtype=u.dtype)
        h = torch.zeros(bsz, dim, n, dtype=u.dtype)
        for t in range(seq):
            dA = torch.exp(delta[:, t].unsqueeze(-1) * A)  # [B, D, N]
            h = torch.addcmul(h * dA, du[:, t].unsqueeze(-1), Bm[:, t].unsqueeze(1))
            hs[:, t] = h
            y[:, t] = torch.bmm(h, Cm[:, t].unsqueeze(-1)).squeeze(-1)
        ctx.save_for_backward(u, delta, A, Bm, Cm, hs)
        return y

    @staticmethod
    def backward(ctx, gy):
        u, delta, A, Bm, Cm, hs = ctx.saved_tensors
        bsz, seq, dim = u.shape
        n = A.shape[1]
        gy = gy.contiguous()
        du = delta * u
        gu = torch.empty_like(u)
        g_delta = torch.empty_like(delta)
        gB = torch.empty_like(Bm)
        gC = torch.empty_like(Cm)
        gA_b = torch.zeros(bsz, dim, n, dtype=u.dtype)  # summed over the batch at the end
        # gh = dL/dh_t: the readout at t plus the carry from t+1 (gh_{t+1} * dA_{t+1}).
        gh = torch.zeros(bsz, dim, n, dtype=u.dtype)
        dA_next = None
        for t in range(seq - 1, -1, -1):
            h_t = hs[:, t]
            gy_t = gy[:, t]
            if dA_next is not None:
                gh = gh * dA_next
            gh = torch.addcmul(gh, gy_t.unsqueeze(-1), Cm[:, t].unsqueeze(1))
            gC[:, t] = torch.bmm(gy_t.unsqueeze(1), h_t).squeeze(1)
            gB[:, t] = torch.bmm(du[:, t].unsqueeze(1), gh).squeeze(1)
            g_du = torch.bmm(gh, Bm[:, t].unsqueeze(-1)).squeeze(-1)  # [B, D]
            dA = torch.exp(delta[:, t].unsqueeze(-1) * A)
            if t > 0:
                g_log = gh * hs[:, t - 1] * dA  # dL/d(delta_t * A), [B, D, N]
                gA_b.addcmul_(g_log, delta[:, t].unsqueeze(-1))
                g_delta[:, t] = (g_log * A).sum(-1) + g_du * u[:, t]
            else:  # h_{-1} = 0: dA_0 does not matter
                g_delta[:, t] = g_du * u[:, t]
            gu[:, t] = g_du * delta[:, t]
            dA_next = dA
        return gu, g_delta, gA_b.sum(0), gB, gC


def mamba_mixer_forward(m, x):
    """Same math as HF JambaMambaMixer.forward without cache. x: [B, L, H] fp32 -> [B, L, H]."""
    seq = x.shape[1]
    proj = m.in_proj(x)  # [B, L, 2*Di]
    xs, gate = proj.chunk(2, dim=-1)
    xc = F.conv1d(
        xs.transpose(1, 2), m.conv1d.weight, m.conv1d.bias,
        padding=m.conv_kernel_size - 1, groups=m.intermediate_size,
    )[:, :, :seq]
    xc = F.silu(xc).transpose(1, 2)  # [B, L, Di]
    dt, Bm, Cm = torch.split(
        m.x_proj(xc), [m.time_step_rank, m.ssm_state_size, m.ssm_state_size], dim=-1
    )
    dt = m.dt_layernorm(dt)
    Bm = m.b_layernorm(Bm)
    Cm = m.c_layernorm(Cm)
    delta = F.softplus(dt @ m.dt_proj.weight.t() + m.dt_proj.bias)  # [B, L, Di]
    A = -torch.exp(m.A_log.float())
    y = SelectiveScan.apply(xc.contiguous(), delta.contiguous(), A, Bm.contiguous(), Cm.contiguous())
    y = (y + xc * m.D) * F.silu(gate)
    return m.out_proj(y)


def attention_forward(attn, x):
    """HF JambaAttention (no RoPE, causal, GQA) via SDPA. x: [B, L, H]."""
    bsz, seq, _ = x.shape
    hd = attn.head_dim
    q = attn.q_proj(x).view(bsz, seq, -1, hd).transpose(1, 2)
    k = attn.k_proj(x).view(bsz, seq, -1, hd).transpose(1, 2)
    v = attn.v_proj(x).view(bsz, seq, -1, hd).transpose(1, 2)
    rep = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(rep, dim=1)  # query head j uses kv head j // rep, like repeat_kv
    v = v.repeat_interleave(rep, dim=1)
    o = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=attn.scaling)
    return attn.o_proj(o.transpose(1, 2).reshape(bsz, seq, -1))


def moe_forward(moe, x):
    """HF JambaSparseMoeBlock: softmax over all experts, top-k, NO renormalisation.
    Returns (out [B, L, H], switch-style load-balancing loss)."""
    shape = x.shape
    flat = x.reshape(-1, shape[-1])
    logits = F.linear(flat, moe.router.weight)
    probs = torch.softmax(logits.float(), dim=-1)
    topw, topi = torch.topk(probs, moe.top_k, dim=-1)
    ex = moe.experts
    out = torch.zeros_like(flat)
    for e in range(moe.num_experts):
        tok_idx, slot = torch.where(topi == e)
        if tok_idx.numel() == 0:
            continue
        gate, up = F.linear(flat[tok_idx], ex.gate_up_proj[e]).chunk(2, dim=-1)
        h = F.linear(F.silu(gate) * up, ex.down_proj[e]) * topw[tok_idx, slot, None]
        out = out.index_add(0, tok_idx, h)
    frac = F.one_hot(topi, moe.num_experts).float().sum(1).mean(0) / moe.top_k
    aux = moe.num_experts * (frac * probs.mean(0)).sum()
    return out.view(shape), aux


def fast_forward(model, input_ids):
    """Training forward of JambaForCausalLM without cache. Returns (logits [B, L, V], aux loss)."""
    from transformers.models.jamba.modeling_jamba import JambaMLP

    h = model.model.embed_tokens(input_ids)
    aux = h.new_zeros(())
    for layer in model.model.layers:
        u = layer.input_layernorm(h)
        if hasattr(layer, "mamba"):
            h = h + mamba_mixer_forward(layer.mamba, u)
        else:
            h = h + attention_forward(layer.self_attn, u)
        u = layer.pre_ff_layernorm(h)
        if isinstance(layer.feed_forward, JambaMLP):
            h = h + layer.feed_forward(u)
        else:
            out, a = moe_forward(layer.feed_forward, u)
            h = h + out
            aux = aux + a
    h = model.model.final_layernorm(h)
    return model.lm_head(h), aux


# --------------------------------------------------------------------------------------------
# Saving, verification, model card
# --------------------------------------------------------------------------------------------


def save_hf_folder(model, out_dir):
    """Writes config.json + model.safetensors (bf16) + generation_config.json to out_dir."""
    from transformers import GenerationConfig

    os.makedirs(out_dir, exist_ok=True)
    m = copy.deepcopy(model).to(torch.bfloat16)
    m.config.use_cache = True
    m.generation_config = GenerationConfig(
        bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID, max_new_tokens=64
    )
    tmp = out_dir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    m.save_pretrained(tmp)
    for name in os.listdir(tmp):
        os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))
    shutil.rmtree(tmp, ignore_errors=True)


def verify_folder(out_dir):
    """Loads out_dir with transformers (fp32) and checks fast_forward against HF's own forward."""
    from transformers import AutoTokenizer, JambaForCausalLM

    tok = AutoTokenizer.from_pretrained(out_dir)
    model = JambaForCausalLM.from_pretrained(out_dir, dtype=torch.float32).eval()
    text = "In the beginning God created the heaven and the earth."
    ids = tok(text, return_tensors="pt").input_ids
    assert ids[0, 0].item() == BOS_ID, "AutoTokenizer must prepend <|startoftext|>"
    g = torch.Generator().manual_seed(0)
    rnd = torch.randint(4, model.config.vocab_size, (2, 40), generator=g)
    worst = 0.0
    with torch.no_grad():
        for x in (ids, rnd):
            ref = model(x, logits_to_keep=0).logits
            ours, _ = fast_forward(model, x)
            worst = max(worst, (ref - ours).abs().max().item())
    print(f"verify: max |HF logits - fast_forward logits| = {worst:.3e} (fp32)", flush=True)
    if worst >= 1e-3:
        sys.exit("error: training forward does not match transformers' JambaForCausalLM")
    return worst


def generate_samples(out_dir, prompt):
    from transformers import AutoTokenizer, JambaForCausalLM

    tok = AutoTokenizer.from_pretrained(out_dir)
    model = JambaForCausalLM.from_pretrained(out_dir, dtype=torch.float32).eval()
    ids = tok(prompt, return_tensors="pt").input_ids
    out = {}
    with torch.no_grad():
        g = model.generate(ids, max_new_tokens=60, do_sample=False)
        out["greedy"] = tok.decode(g[0], skip_special_tokens=True)
        torch.manual_seed(0)
        s = model.generate(ids, max_new_tokens=60, do_sample=True, temperature=0.8, top_k=40)
        out["sampled (temperature 0.8, top_k 40, torch.manual_seed(0))"] = tok.decode(
            s[0], skip_special_tokens=True
        )
    return out, ids[0].tolist()


def count_params(model):
    total = sum(p.numel() for p in model.parameters())
    cfg = model.config
    per_expert = 3 * cfg.hidden_size * cfg.intermediate_size
    moe_layers = sum(1 for n in cfg.layers_num_experts if n > 1)
    active = total - moe_layers * (cfg.num_experts - cfg.num_experts_per_tok) * per_expert
    return total, active


def write_model_card(out_dir, args, info, samples, prompt_ids, verify_diff):
    from transformers import JambaConfig

    cfg = JambaConfig.from_pretrained(out_dir)
    prompt = args.prompt
    size = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
    attn = [i for i, t in enumerate(cfg.layers_block_type) if t == "attention"]
    moe = [i for i, n in enumerate(cfg.layers_num_experts) if n > 1]
    sample_md = "\n".join(
        f"* {name}:\n\n```text\n{text}\n```\n" for name, text in samples.items()
    )
    card = f"""# jamba-demo: a tiny Jamba trained on the King James Bible

A {info['params'] / 1e6:.2f}M-parameter (≈{info['active'] / 1e6:.2f}M active per token)
`JambaForCausalLM` checkpoint, small enough to ship in the repository, so that the engine can be
tried without downloading anything. It writes KJV-flavoured English; it knows nothing else.

## Architecture

Standard Hugging Face Jamba folder (`model_type: jamba`, weights in **bfloat16**, per-expert
weight names as on the Hub), with the Jamba-v0.1 layer schedule rules scaled down:

| field | value |
| --- | --- |
| layers | {cfg.num_hidden_layers} (attention at {attn}, Mamba elsewhere; MoE FFN at {moe}, dense MLP elsewhere) |
| hidden / intermediate | {cfg.hidden_size} / {cfg.intermediate_size} |
| attention | {cfg.num_attention_heads} query heads, {cfg.num_key_value_heads} KV heads (GQA), head dim {cfg.hidden_size // cfg.num_attention_heads}, no positional encoding |
| MoE | {cfg.num_experts} experts, top-{cfg.num_experts_per_tok}, softmax over all experts, no renormalisation |
| Mamba | d_state {cfg.mamba_d_state}, d_conv {cfg.mamba_d_conv}, expand {cfg.mamba_expand}, dt_rank {cfg.mamba_dt_rank}, conv bias, no proj bias |
| vocab | {cfg.vocab_size} (untied `lm_head`) |
| files | {size / 1e6:.1f} MB in total |

## Tokenizer

Byte-fallback BPE trained with `tokenizers` in the Jamba style: Metaspace `▁` word marks with no
dummy prefix (the first word of a text has no `▁`), `<|pad|>`=0, `<|startoftext|>`=1 (BOS, added
by the post-processor and `add_bos_token`), `<|endoftext|>`=2, `<|unk|>`=3, byte tokens
`<0x00>`..`<0xFF>` = 4..259, newline `\\n` is a regular token. The prompt `{prompt!r}` encodes to
`{prompt_ids}`.

## Data and license

* Text: the King James Version of the Bible (1611), as shipped by the Debian package
  `bible-kjv-text` (version 4.38, read with the `bible` program of package `bible-kjv`: `bible -f
  Gen1:1-Rev22:21`). The KJV text is in the public domain (its copyright expired; see
  `/usr/share/doc/bible-kjv-text/copyright`). The Debian packaging tools are GPL-2+, but only the
  text was used.
* Layout: one verse per line (verse references removed), `<|endoftext|>` after the last verse of
  each book; every {args.heldout_every}th chapter held out for validation. Training windows start
  at a verse start, right after `<|startoftext|>`.
* These weights and the tokenizer are derived solely from public-domain text and are released
  under the same license as this repository.

## Training

```sh
{info['command']}
```

CPU only, one thread (`torch.set_num_threads(1)`), fp32 training, saved in bf16. AdamW
(β=0.9/0.95, weight decay 0.1 on matrices), peak lr {args.lr}, {args.warmup} warmup steps, cosine
decay to 10% over the time budget, gradient clip 1.0, batch {args.batch} × {args.seq_len} tokens,
MoE load-balancing loss × {args.aux_coef}.

* steps: {info['step']} ({info['tokens'] / 1e6:.2f}M tokens, {info['minutes']:.1f} min)
* final training loss (mean of the last {info['loss_window']} steps): {info['train_loss']:.3f}
* validation loss (held-out chapters): {info['val_loss']:.3f} (perplexity {math.exp(info['val_loss']):.1f})
* `tools/train_demo_model.py` checks that its own training forward matches transformers'
  `JambaForCausalLM` loaded from this folder: max |Δlogits| = {verify_diff:.1e} (fp32).

## Sample generations (transformers, fp32, prompt `{prompt}`)

{sample_md}"""
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(card)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model, val, args, batches=8):
    g = torch.Generator().manual_seed(99)
    total = 0.0
    for _ in range(batches):
        b = sample_batch(val[0], val[1], args.batch, args.seq_len, g)
        logits, _ = fast_forward(model, b[:, :-1])
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), b[:, 1:].reshape(-1)).item()
    return total / batches


def lr_at(progress, step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    return args.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(REPO_ROOT, "models", "jamba-demo"))
    p.add_argument("--minutes", type=float, default=75.0, help="training wall-clock budget")
    p.add_argument("--steps", type=int, default=100000, help="cap on optimizer steps")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--aux-coef", type=float, default=0.01)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--intermediate", type=int, default=288)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--attn-period", type=int, default=4)
    p.add_argument("--attn-offset", type=int, default=2)
    p.add_argument("--experts", type=int, default=4)
    p.add_argument("--heldout-every", type=int, default=50)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--save-every-min", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prompt", default="In the beginning")
    p.add_argument("--resume", action="store_true", help="continue from the cached training state")
    p.add_argument("--finalize-only", action="store_true",
                   help="skip training; verify --out and rewrite its model card from the cache")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    os.makedirs(CACHE_DIR, exist_ok=True)
    state_path = os.path.join(CACHE_DIR, "train_state.pt")
    info_path = os.path.join(CACHE_DIR, "train_info.json")
    command = "python3 tools/train_demo_model.py " + " ".join(sys.argv[1:])

    if args.finalize_only:
        with open(info_path) as f:
            info = json.load(f)
        finalize(args, info)
        return

    verses = load_kjv()
    print(f"data: {len(verses)} verses", flush=True)
    tok = train_tokenizer([v[2] for v in verses], args.vocab, args.out)
    streams = build_streams(verses, tok, args.heldout_every)
    train, val = streams["train"], streams["val"]
    print(f"tokens: train {len(train[0])}, val {len(val[0])}, vocab {tok.get_vocab_size()}", flush=True)

    from transformers import JambaForCausalLM

    config = make_config(args, tok.get_vocab_size())
    model = JambaForCausalLM(config)
    init_mamba_dt(model)
    total, active = count_params(model)
    print(f"model: {total / 1e6:.3f}M params ({active / 1e6:.3f}M active), "
          f"layers {config.layers_block_type}, experts {config.layers_num_experts}", flush=True)

    decay = [p_ for n, p_ in model.named_parameters() if p_.dim() >= 2 and "A_log" not in n]
    no_decay = [p_ for n, p_ in model.named_parameters() if not (p_.dim() >= 2 and "A_log" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.95), eps=1e-8,
    )
    step, elapsed_before, tokens = 0, 0.0, 0
    losses = []
    if args.resume and os.path.exists(state_path):
        st = torch.load(state_path, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, elapsed_before, tokens = st["step"], st["elapsed"], st["tokens"]
        losses = st.get("losses", [])
        print(f"resumed at step {step} ({elapsed_before / 60:.1f} min)", flush=True)

    gen = torch.Generator().manual_seed(args.seed + step)
    budget = args.minutes * 60.0
    t0 = time.time()
    last_save = t0
    t_log = t0
    val_loss = float("nan")

    def checkpoint(final):
        save_hf_folder(model, args.out)
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                    "elapsed": elapsed_before + time.time() - t0, "tokens": tokens,
                    "losses": losses[-1000:]}, state_path)
        window = min(len(losses), 50)
        info = {"command": command, "step": step, "tokens": tokens,
                "minutes": (elapsed_before + time.time() - t0) / 60.0,
                "train_loss": sum(losses[-window:]) / max(window, 1), "loss_window": window,
                "val_loss": val_loss, "params": total, "active": active, "args": vars(args)}
        with open(info_path, "w") as f:
            json.dump(info, f, indent=2)
        print(f"saved {'final' if final else 'checkpoint'} at step {step} to {args.out}", flush=True)
        return info

    model.train()
    while step < args.steps:
        elapsed = elapsed_before + time.time() - t0
        if elapsed >= budget:
            break
        lr = lr_at(elapsed / budget, step, args)
        for grp in opt.param_groups:
            grp["lr"] = lr
        b = sample_batch(train[0], train[1], args.batch, args.seq_len, gen)
        logits, aux = fast_forward(model, b[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), b[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        (loss + args.aux_coef * aux).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += args.batch * args.seq_len
        losses.append(loss.item())
        if step % args.log_every == 0:
            now = time.time()
            rate = args.log_every * args.batch * args.seq_len / (now - t_log)
            t_log = now
            avg = sum(losses[-args.log_every:]) / args.log_every
            print(f"step {step} loss {avg:.4f} aux {aux.item():.3f} lr {lr:.2e} "
                  f"{rate:.0f} tok/s elapsed {(elapsed_before + now - t0) / 60:.1f} min", flush=True)
        if step % args.eval_every == 0:
            model.eval()
            val_loss = evaluate(model, val, args)
            model.train()
            print(f"step {step} val_loss {val_loss:.4f}", flush=True)
        if time.time() - last_save >= args.save_every_min * 60:
            checkpoint(final=False)
            last_save = time.time()

    model.eval()
    val_loss = evaluate(model, val, args)
    print(f"final: step {step} val_loss {val_loss:.4f}", flush=True)
    info = checkpoint(final=True)
    finalize(args, info)


def finalize(args, info):
    diff = verify_folder(args.out)
    samples, prompt_ids = generate_samples(args.out, args.prompt)
    for name, text in samples.items():
        print(f"sample [{name}]: {text!r}", flush=True)
    write_model_card(args.out, argparse.Namespace(**info["args"]), info, samples, prompt_ids, diff)
    print(f"done: {args.out}", flush=True)


if __name__ == "__main__":
    main()
