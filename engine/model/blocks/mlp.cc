#include "engine/model/blocks/mlp.h"

#include "common/status_macros.h"

namespace jamba {

absl::Status LoadMlp(WeightLoader& loader, const std::string& gate, const std::string& up,
                     const std::string& down, int64_t inter, int64_t hidden, MlpWeights* w,
                     bool expert) {
  if (expert) {
    JAMBA_ASSIGN_OR_RETURN(w->gate, loader.ExpertMatrix(gate, {inter, hidden}, &w->gate_scale));
    JAMBA_ASSIGN_OR_RETURN(w->up, loader.ExpertMatrix(up, {inter, hidden}, &w->up_scale));
    JAMBA_ASSIGN_OR_RETURN(w->down, loader.ExpertMatrix(down, {hidden, inter}, &w->down_scale));
    return absl::OkStatus();
  }
  JAMBA_ASSIGN_OR_RETURN(w->gate, loader.Matrix(gate, {inter, hidden}));
  JAMBA_ASSIGN_OR_RETURN(w->up, loader.Matrix(up, {inter, hidden}));
  JAMBA_ASSIGN_OR_RETURN(w->down, loader.Matrix(down, {hidden, inter}));
  return absl::OkStatus();
}

namespace {

// y = x w^T, through the int8 product when w is quantised.
void Project(Backend& be, const Tensor& x, const Tensor& w, const Tensor& scale,
             const Tensor& y) {
  if (w.dtype == DType::kI8) {
    be.MatMulInt8(x, w, scale, nullptr, y);
  } else {
    be.MatMul(x, w, nullptr, y);
  }
}

}  // namespace

void MlpForward(const ForwardContext& ctx, const MlpWeights& w, const Tensor& x,
                const Tensor& out) {
  Backend& be = *ctx.backend;
  const int64_t n = x.dim(0), inter = w.down.dim(1);
  Tensor gu = ctx.ws->Take(DType::kF32, {n, 2 * inter});  // [silu(gate) * up | up]
  const Tensor g = gu.Cols(0, inter);
  const Tensor u = gu.Cols(inter, inter);
  if (Present(w.gate_up)) {
    Project(be, x, w.gate_up, w.gate_up_scale, gu);
  } else {
    Project(be, x, w.gate, w.gate_scale, g);
    Project(be, x, w.up, w.up_scale, u);
  }
  be.SiluMul(g, u, g);
  Project(be, g, w.down, w.down_scale, out);
}

}  // namespace jamba
