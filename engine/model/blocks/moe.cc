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
                             loader.StackedExpertMatrix(names.fused_gate_up, e_count, e, 2 * inter,
                                                        h, &x.gate_up_scale));
      JAMBA_ASSIGN_OR_RETURN(x.down, loader.StackedExpertMatrix(names.fused_down, e_count, e, h,
                                                                inter, &x.down_scale));
    } else {
      const std::string p = absl::StrCat(names.expert_prefix, e, ".");
      JAMBA_RETURN_IF_ERROR(LoadMlp(loader, p + names.gate + ".weight", p + names.up + ".weight",
                                    p + names.down + ".weight", inter, h, &x, /*expert=*/true));
    }
  }
  return absl::OkStatus();
}

absl::Status MoeForward(const ForwardContext& ctx, int64_t layer, const MoeWeights& w,
                        const Tensor& x, const Tensor& out) {
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
  // shapes of the expert GEMMs and the requests to expert workers.
  std::vector<int32_t> host_ids(n * k);
  std::vector<float> host_w(n * k);
  JAMBA_RETURN_IF_ERROR(be.Download(ids, host_ids.data()));
  JAMBA_RETURN_IF_ERROR(be.Download(weights, host_w.data()));
  std::vector<std::vector<int32_t>> tokens(e_count);
  std::vector<std::vector<float>> scales(e_count);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t j = 0; j < k; ++j) {
      const int32_t e = host_ids[t * k + j];
      tokens[e].push_back(static_cast<int32_t>(t));
      scales[e].push_back(host_w[t * k + j]);
    }
  }
  // Per expert: its rows of x gathered on the device ([m, H] f32), and for experts computed
  // elsewhere their host copies in `remote_x` / `remote_y` ([rows, H] f32 each, back to back).
  std::vector<Tensor> idx(e_count), scale(e_count), xe(e_count);
  std::vector<ExpertWork> remote;
  std::vector<int64_t> remote_offset(e_count, -1);
  int64_t remote_rows = 0;
  for (int64_t e = 0; e < e_count; ++e) {
    const int64_t m = static_cast<int64_t>(tokens[e].size());
    if (m == 0) continue;
    idx[e] = ctx.ws->Take(DType::kI32, {m});
    scale[e] = ctx.ws->Take(DType::kF32, {m});
    JAMBA_RETURN_IF_ERROR(be.Upload(tokens[e].data(), m * sizeof(int32_t), idx[e]));
    JAMBA_RETURN_IF_ERROR(be.Upload(scales[e].data(), m * sizeof(float), scale[e]));
    xe[e] = ctx.ws->Take(DType::kF32, {m, h});
    be.GatherRows(x, idx[e], xe[e]);
    if (!Present(w.experts[e].down)) {
      if (ctx.experts == nullptr) {
        return absl::FailedPreconditionError(
            absl::StrCat("layer ", layer, ": tokens routed to expert ", e,
                         ", which this shard does not hold and no expert worker serves"));
      }
      remote_offset[e] = remote_rows;
      remote_rows += m;
    }
  }
  std::vector<float> remote_x(remote_rows * h), remote_y(remote_rows * h);
  if (remote_rows > 0) {
    for (int64_t e = 0; e < e_count; ++e) {
      if (remote_offset[e] < 0) continue;
      float* xr = remote_x.data() + remote_offset[e] * h;
      JAMBA_RETURN_IF_ERROR(be.Download(xe[e], xr));
      remote.push_back(ExpertWork{static_cast<int32_t>(e), xe[e].dim(0), xr,
                                  remote_y.data() + remote_offset[e] * h});
    }
    JAMBA_RETURN_IF_ERROR(ctx.experts->Compute(layer, remote));
  }

  be.Zero(out);
  for (int64_t e = 0; e < e_count; ++e) {
    const int64_t m = static_cast<int64_t>(tokens[e].size());
    if (m == 0) continue;
    Tensor ye = ctx.ws->Take(DType::kF32, {m, h});
    if (remote_offset[e] >= 0) {
      JAMBA_RETURN_IF_ERROR(
          be.Upload(remote_y.data() + remote_offset[e] * h, m * h * sizeof(float), ye));
    } else {
      MlpForward(ctx, w.experts[e], xe[e], ye);
    }
    be.ScatterAddScaled(ye, idx[e], scale[e], out);
  }
  return absl::OkStatus();
}

}  // namespace jamba
