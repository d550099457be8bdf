#include "engine/model/blocks/moe.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/model/blocks/mlp.h"

namespace jamba {

absl::Status LoadMoe(WeightLoader& loader, const ModelConfig& c, const MoeNames& names,
                     const std::function<bool(int64_t)>& want_expert, MoeWeights* w) {
  JAMBA_ASSIGN_OR_RETURN(w->router, loader.Matrix(names.router, {c.num_experts, c.hidden_size}));
  return LoadExperts(loader, c, names, want_expert, w);
}

absl::Status LoadExperts(WeightLoader& loader, const ModelConfig& c, const MoeNames& names,
                         const std::function<bool(int64_t)>& want_expert, MoeWeights* w) {
  const int64_t e_count = c.num_experts, h = c.hidden_size, inter = c.intermediate_size;
  w->experts.assign(e_count, MlpWeights{});
  const bool fused = loader.Has(names.fused_gate_up);
  for (int64_t e = 0; e < e_count; ++e) {
    if (want_expert && !want_expert(e)) continue;
    MlpWeights& x = w->experts[e];
    if (fused) {
      JAMBA_ASSIGN_OR_RETURN(x.gate_up,
                             loader.StackedMatrix(names.fused_gate_up, e_count, e, 2 * inter, h));
      JAMBA_ASSIGN_OR_RETURN(x.down,
                             loader.StackedMatrix(names.fused_down, e_count, e, h, inter));
    } else {
      const std::string p = absl::StrCat(names.expert_prefix, e, ".");
      JAMBA_RETURN_IF_ERROR(LoadMlp(loader, p + names.gate + ".weight", p + names.up + ".weight",
                                    p + names.down + ".weight", inter, h, &x));
    }
  }
  return absl::OkStatus();
}

void MoeForward(const ForwardContext& ctx, const MoeWeights& w, const Tensor& x,
                const Tensor& out) {
  const ModelConfig& c = *ctx.config;
  Backend& be = *ctx.backend;
  const int64_t n = x.dim(0), e_count = c.num_experts, k = c.num_experts_per_tok;
  const int64_t h = x.dim(1);

  Tensor logits = ctx.ws->Take(DType::kF32, {n, e_count});
  be.MatMul(x, w.router, nullptr, logits);
  Tensor ids = ctx.ws->Take(DType::kI32, {n, k});
  Tensor weights = ctx.ws->Take(DType::kF32, {n, k});
  be.MoeRoute(logits, static_cast<int>(k), c.moe_renormalize, ids, weights);

  // Group (token, weight) pairs by expert on the host: the per-expert row counts decide the
  // shapes of the expert GEMMs (and, in the cluster, the requests to expert workers).
  std::vector<int32_t> host_ids(n * k);
  std::vector<float> host_w(n * k);
  JAMBA_CHECK(be.Download(ids, host_ids.data()).ok());
  JAMBA_CHECK(be.Download(weights, host_w.data()).ok());
  std::vector<std::vector<int32_t>> tokens(e_count);
  std::vector<std::vector<float>> scales(e_count);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t j = 0; j < k; ++j) {
      const int32_t e = host_ids[t * k + j];
      tokens[e].push_back(static_cast<int32_t>(t));
      scales[e].push_back(host_w[t * k + j]);
    }
  }

  be.Zero(out);
  for (int64_t e = 0; e < e_count; ++e) {
    const int64_t m = static_cast<int64_t>(tokens[e].size());
    if (m == 0) continue;
    JAMBA_CHECK_MSG(Present(w.experts[e].down), "token routed to an expert this shard lacks");
    Tensor idx = ctx.ws->Take(DType::kI32, {m});
    Tensor scale = ctx.ws->Take(DType::kF32, {m});
    JAMBA_CHECK(be.Upload(tokens[e].data(), m * sizeof(int32_t), idx).ok());
    JAMBA_CHECK(be.Upload(scales[e].data(), m * sizeof(float), scale).ok());
    Tensor xe = ctx.ws->Take(DType::kF32, {m, h});
    be.GatherRows(x, idx, xe);
    Tensor ye = ctx.ws->Take(DType::kF32, {m, h});
    MlpForward(ctx, w.experts[e], xe, ye);
    be.ScatterAddScaled(ye, idx, scale, out);
  }
}

}  // namespace jamba
