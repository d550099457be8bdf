#include "engine/model/blocks/mlp.h"

#include "common/status_macros.h"

namespace jamba {

absl::Status LoadMlp(WeightLoader& loader, const std::string& gate, const std::string& up,
                     const std::string& down, int64_t inter, int64_t hidden, MlpWeights* w) {
  JAMBA_ASSIGN_OR_RETURN(w->gate, loader.Matrix(gate, {inter, hidden}));
  JAMBA_ASSIGN_OR_RETURN(w->up, loader.Matrix(up, {inter, hidden}));
  JAMBA_ASSIGN_OR_RETURN(w->down, loader.Matrix(down, {hidden, inter}));
  return absl::OkStatus();
}

void MlpForward(const ForwardContext& ctx, const MlpWeights& w, const Tensor& x,
                const Tensor& out) {
  Backend& be = *ctx.backend;
  const int64_t n = x.dim(0), inter = w.down.dim(1);
  Tensor gu = ctx.ws->Take(DType::kF32, {n, 2 * inter});  // [silu(gate) * up | up]
  const Tensor g = gu.Cols(0, inter);
  const Tensor u = gu.Cols(inter, inter);
  if (Present(w.gate_up)) {
    be.MatMul(x, w.gate_up, nullptr, gu);
  } else {
    be.MatMul(x, w.gate, nullptr, g);
    be.MatMul(x, w.up, nullptr, u);
  }
  be.SiluMul(g, u, g);
  be.MatMul(g, w.down, nullptr, out);
}

}  // namespace jamba
