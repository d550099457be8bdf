#include "engine/model/blocks/attention.h"

#include <cmath>

#include "common/status_macros.h"

namespace jamba {

absl::Status LoadAttention(WeightLoader& loader, const ModelConfig& c, const std::string& p,
                           AttentionWeights* w) {
  const int64_t h = c.hidden_size, q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
  JAMBA_ASSIGN_OR_RETURN(w->q_proj, loader.Matrix(p + "q_proj.weight", {q, h}));
  JAMBA_ASSIGN_OR_RETURN(w->k_proj, loader.Matrix(p + "k_proj.weight", {kv, h}));
  JAMBA_ASSIGN_OR_RETURN(w->v_proj, loader.Matrix(p + "v_proj.weight", {kv, h}));
  JAMBA_ASSIGN_OR_RETURN(w->o_proj, loader.Matrix(p + "o_proj.weight", {h, q}));
  return absl::OkStatus();
}

void AttentionForward(const ForwardContext& ctx, const AttentionWeights& w, const Tensor& k_cache,
                      const Tensor& v_cache, const Tensor& x, const Tensor& out) {
  const ModelConfig& c = *ctx.config;
  Backend& be = *ctx.backend;
  const int64_t n = x.dim(0), hd = c.head_dim;
  Tensor q = ctx.ws->Take(DType::kF32, {n, c.num_heads * hd});
  Tensor k = ctx.ws->Take(DType::kF32, {n, c.num_kv_heads * hd});
  Tensor v = ctx.ws->Take(DType::kF32, {n, c.num_kv_heads * hd});
  be.MatMul(x, w.q_proj, nullptr, q);
  be.MatMul(x, w.k_proj, nullptr, k);
  be.MatMul(x, w.v_proj, nullptr, v);
  if (c.use_rope) {
    be.Rope(*ctx.layout, q, hd, c.rope_theta);
    be.Rope(*ctx.layout, k, hd, c.rope_theta);
  }
  Tensor att = ctx.ws->Take(DType::kF32, {n, c.num_heads * hd});
  AttentionArgs args;
  args.q = q;
  args.k = k;
  args.v = v;
  args.k_cache = k_cache;
  args.v_cache = v_cache;
  args.num_heads = c.num_heads;
  args.num_kv_heads = c.num_kv_heads;
  args.head_dim = hd;
  args.scale = static_cast<float>(std::pow(static_cast<double>(hd), -0.5));  // as HF: hd**-0.5
  args.out = att;
  be.Attention(*ctx.layout, args);
  be.MatMul(att, w.o_proj, nullptr, out);
}

}  // namespace jamba
