#include "engine/model/blocks/moe.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/model/blocks/mlp.h"
#include "engine/model/model_weights.h"

namespace jamba {
namespace {

// Slots (tokens x experts per token) at or below which the experts run as grouped products
// with the group sizes left on the device: decode steps, where one launch per projection and
// no wait for the counts matter most. Above it each expert's group is a GEMM of its own, sized
// on the host (what cuBLAS does best). On the CPU both compute the same bits.
constexpr int64_t kGroupedMaxSlots = 64;

// `matrix` (int8 with `matrix_scale` when quantised) of every expert, grouped; empty when no
// expert has it.
GroupedMatrix Group(const std::vector<MlpWeights>& experts, Tensor MlpWeights::*matrix,
                    Tensor MlpWeights::*matrix_scale) {
  GroupedMatrix g;
  if (!Present(experts[0].*matrix)) return g;
  for (const MlpWeights& e : experts) g.matrices.push_back(e.*matrix);
  if ((experts[0].*matrix).dtype == DType::kI8) {
    for (const MlpWeights& e : experts) g.scales.push_back(e.*matrix_scale);
  }
  return g;
}

// MlpForward for every expert at once over rows grouped by expert (xg, yg [slots, H]).
void GroupedExpertsForward(const ForwardContext& ctx, const MoeWeights& w, const Tensor& xg,
                           const Tensor& counts, const Tensor& yg) {
  Backend& be = *ctx.backend;
  const int64_t rows = xg.dim(0), inter = w.experts[0].down.dim(1);
  Tensor gu = ctx.ws->Take(DType::kF32, {rows, 2 * inter});  // [silu(gate) * up | up]
  const Tensor g = gu.Cols(0, inter);
  const Tensor u = gu.Cols(inter, inter);
  if (!w.gate_up.matrices.empty()) {
    be.MatMulGrouped(xg, w.gate_up.matrices, w.gate_up.scales, counts, gu);
  } else {
    be.MatMulGrouped(xg, w.gate.matrices, w.gate.scales, counts, g);
    be.MatMulGrouped(xg, w.up.matrices, w.up.scales, counts, u);
  }
  be.SiluMul(g, u, g);
  be.MatMulGrouped(g, w.down.matrices, w.down.scales, counts, yg);
}

}  // namespace

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
      JAMBA_ASSIGN_OR_RETURN(x.gate_up, loader.StackedExpertMatrix(names.fused_gate_up, e_count, e,
                                                                   2 * inter, h, &x.gate_up_scale));
      JAMBA_ASSIGN_OR_RETURN(x.down, loader.StackedExpertMatrix(names.fused_down, e_count, e, h,
                                                                inter, &x.down_scale));
    } else {
      const std::string p = absl::StrCat(names.expert_prefix, e, ".");
      JAMBA_RETURN_IF_ERROR(LoadMlp(loader, p + names.gate + ".weight", p + names.up + ".weight",
                                    p + names.down + ".weight", inter, h, &x, /*expert=*/true));
    }
  }
  w->holds_every_expert = true;
  for (const MlpWeights& e : w->experts) {
    w->holds_every_expert = w->holds_every_expert && Present(e.down);
  }
  if (w->holds_every_expert) {
    w->gate_up = Group(w->experts, &MlpWeights::gate_up, &MlpWeights::gate_up_scale);
    w->gate = Group(w->experts, &MlpWeights::gate, &MlpWeights::gate_scale);
    w->up = Group(w->experts, &MlpWeights::up, &MlpWeights::up_scale);
    w->down = Group(w->experts, &MlpWeights::down, &MlpWeights::down_scale);
  }
  return absl::OkStatus();
}

absl::Status MoeForward(const ForwardContext& ctx, int64_t layer, const MoeWeights& w,
                        const Tensor& x, const Tensor& out) {
  MoePending pending;
  JAMBA_RETURN_IF_ERROR(MoeBegin(ctx, layer, w, x, out, &pending));
  if (!pending.work.empty()) JAMBA_RETURN_IF_ERROR(ctx.experts->Compute(layer, pending.work));
  return MoeFinish(ctx, &pending);
}

absl::Status MoeBegin(const ForwardContext& ctx, int64_t layer, const MoeWeights& w,
                      const Tensor& x, const Tensor& out, MoePending* p) {
  const ModelConfig& c = *ctx.config;
  Backend& be = *ctx.backend;
  const int64_t n = x.dim(0), e_count = c.num_experts, k = c.num_experts_per_tok;
  const int64_t h = x.dim(1);
  *p = MoePending();
  p->layer = layer;
  p->out = out;

  Tensor logits = ctx.ws->Take(DType::kF32, {n, e_count});
  be.MatMul(x, w.router, nullptr, logits);
  Tensor ids = ctx.ws->Take(DType::kI32, {n, k});
  Tensor weights = ctx.ws->Take(DType::kF32, {n, k});
  be.MoeRoute(logits, static_cast<int>(k), c.moe_renormalize, ids, weights);

  // Group the n * k (token, expert) slots by expert on the device.
  p->token = ctx.ws->Take(DType::kI32, {n * k});
  p->scale = ctx.ws->Take(DType::kF32, {n * k});
  Tensor counts = ctx.ws->Take(DType::kI32, {e_count});
  be.MoeGroup(ids, weights, p->token, p->scale, counts);
  // Every slot's row of x, grouped: expert e's rows follow those of experts 0 .. e-1.
  Tensor xg = ctx.ws->Take(DType::kF32, {n * k, h});
  p->yg = ctx.ws->Take(DType::kF32, {n * k, h});
  be.GatherRows(x, p->token, xg);

  if (n * k <= kGroupedMaxSlots && w.holds_every_expert) {
    GroupedExpertsForward(ctx, w, xg, counts, p->yg);
    return MoeFinish(ctx, p);
  }

  // Otherwise the per-expert counts come to the host, to size each expert's product and the
  // requests to expert workers.
  std::vector<int32_t> count(e_count);
  JAMBA_RETURN_IF_ERROR(be.Download(counts, count.data()));
  p->offset.assign(e_count + 1, 0);
  for (int64_t e = 0; e < e_count; ++e) p->offset[e + 1] = p->offset[e] + count[e];

  // Experts computed elsewhere: their rows go to the host and back ([rows, H] f32 each, back
  // to back in remote_x / remote_y).
  std::vector<int64_t> remote_offset(e_count, -1);
  int64_t remote_rows = 0;
  for (int64_t e = 0; e < e_count; ++e) {
    if (count[e] == 0 || Present(w.experts[e].down)) continue;
    if (ctx.experts == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("layer ", layer, ": tokens routed to expert ", e,
                       ", which this shard does not hold and no expert worker serves"));
    }
    remote_offset[e] = remote_rows;
    remote_rows += count[e];
  }
  p->remote_x.resize(remote_rows * h);
  p->remote_y.resize(remote_rows * h);
  for (int64_t e = 0; e < e_count; ++e) {
    if (remote_offset[e] < 0) continue;
    float* xr = p->remote_x.data() + remote_offset[e] * h;
    JAMBA_RETURN_IF_ERROR(be.Download(xg.Rows(p->offset[e], count[e]), xr));
    p->work.push_back(ExpertWork{static_cast<int32_t>(e), count[e], xr,
                                 p->remote_y.data() + remote_offset[e] * h});
  }
  // The held experts run here before the caller sends the others away (a shard holding some
  // experts and reaching the rest remotely).
  for (int64_t e = 0; e < e_count; ++e) {
    if (count[e] == 0 || remote_offset[e] >= 0) continue;
    MlpForward(ctx, w.experts[e], xg.Rows(p->offset[e], count[e]),
               p->yg.Rows(p->offset[e], count[e]));
  }
  if (p->work.empty()) return MoeFinish(ctx, p);
  return absl::OkStatus();
}

absl::Status MoeFinish(const ForwardContext& ctx, MoePending* p) {
  if (p->finished) return absl::OkStatus();
  Backend& be = *ctx.backend;
  const int64_t h = p->out.dim(1);
  for (const ExpertWork& item : p->work) {
    const Tensor ye = p->yg.Rows(p->offset[item.expert], item.rows);
    JAMBA_RETURN_IF_ERROR(be.Upload(item.y, item.rows * h * sizeof(float), ye));
  }
  // One combine in slot order: every token gets its experts' contributions in ascending
  // expert id, whichever worker computed them.
  be.Zero(p->out);
  be.ScatterAddScaled(p->yg, p->token, p->scale, p->out);
  p->finished = true;
  return absl::OkStatus();
}

}  // namespace jamba
