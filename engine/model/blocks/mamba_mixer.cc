#include "engine/model/blocks/mamba_mixer.h"

#include "common/status_macros.h"

namespace jamba {

absl::Status LoadMambaMixer(WeightLoader& loader, const ModelConfig& c, const std::string& p,
                            MambaMixerWeights* w) {
  const int64_t h = c.hidden_size, di = c.mamba_d_inner, n = c.mamba_d_state, k = c.mamba_d_conv,
                r = c.mamba_dt_rank;
  JAMBA_ASSIGN_OR_RETURN(w->in_proj, loader.Matrix(p + "in_proj.weight", {2 * di, h}));
  JAMBA_ASSIGN_OR_RETURN(w->conv_w, loader.F32(p + "conv1d.weight", {di, 1, k}, {di, k}));
  JAMBA_ASSIGN_OR_RETURN(w->x_proj, loader.Matrix(p + "x_proj.weight", {r + 2 * n, di}));
  JAMBA_ASSIGN_OR_RETURN(w->dt_proj, loader.Matrix(p + "dt_proj.weight", {di, r}));
  JAMBA_ASSIGN_OR_RETURN(w->dt_bias, loader.F32(p + "dt_proj.bias", {di}));
  JAMBA_ASSIGN_OR_RETURN(w->A, loader.NegExpF32(p + "A_log", {di, n}));
  JAMBA_ASSIGN_OR_RETURN(w->D, loader.F32(p + "D", {di}));
  JAMBA_ASSIGN_OR_RETURN(w->out_proj, loader.Matrix(p + "out_proj.weight", {h, di}));
  if (c.mamba_conv_bias) {
    JAMBA_ASSIGN_OR_RETURN(w->conv_b, loader.F32(p + "conv1d.bias", {di}));
  }
  if (c.mamba_proj_bias) {
    JAMBA_ASSIGN_OR_RETURN(w->in_proj_bias, loader.F32(p + "in_proj.bias", {2 * di}));
    JAMBA_ASSIGN_OR_RETURN(w->out_proj_bias, loader.F32(p + "out_proj.bias", {h}));
  }
  if (c.mamba_inner_norm == MambaInnerNorm::kWeighted) {
    JAMBA_ASSIGN_OR_RETURN(w->dt_norm, loader.F32(p + "dt_layernorm.weight", {r}));
    JAMBA_ASSIGN_OR_RETURN(w->b_norm, loader.F32(p + "b_layernorm.weight", {n}));
    JAMBA_ASSIGN_OR_RETURN(w->c_norm, loader.F32(p + "c_layernorm.weight", {n}));
  }
  return absl::OkStatus();
}

void MambaMixerForward(const ForwardContext& ctx, const MambaMixerWeights& w,
                       const Tensor& conv_state, const Tensor& ssm_state, const Tensor& x,
                       const Tensor& out) {
  const ModelConfig& c = *ctx.config;
  Backend& be = *ctx.backend;
  const int64_t n = x.dim(0), di = c.mamba_d_inner, ns = c.mamba_d_state, r = c.mamba_dt_rank;

  Tensor proj = ctx.ws->Take(DType::kF32, {n, 2 * di});  // [n, 2 Di] = [x | z]
  be.MatMul(x, w.in_proj, OrNull(w.in_proj_bias), proj);
  const Tensor xs = proj.Cols(0, di);
  const Tensor z = proj.Cols(di, di);

  Tensor xc = ctx.ws->Take(DType::kF32, {n, di});  // x' = silu(conv(x))
  be.MambaConv(*ctx.layout, xs, w.conv_w, OrNull(w.conv_b), conv_state, xc);

  Tensor sel = ctx.ws->Take(DType::kF32, {n, r + 2 * ns});  // [dt_low | B | C]
  be.MatMul(xc, w.x_proj, nullptr, sel);
  const Tensor dt_low = sel.Cols(0, r);
  const Tensor b = sel.Cols(r, ns);
  const Tensor cc = sel.Cols(r + ns, ns);
  // dt, B and C are normalised separately (Jamba: weighted; FalconMamba: weightless), in one
  // pass over sel.
  if (c.mamba_inner_norm != MambaInnerNorm::kNone) {
    const bool weighted = c.mamba_inner_norm == MambaInnerNorm::kWeighted;
    const int64_t widths[] = {r, ns, ns};
    const Tensor* weights[] = {weighted ? &w.dt_norm : nullptr, weighted ? &w.b_norm : nullptr,
                               weighted ? &w.c_norm : nullptr};
    be.RmsNormGroups(sel, widths, weights, c.mixer_rms_eps);
  }

  Tensor dt = ctx.ws->Take(DType::kF32, {n, di});  // dt_proj(dt_low) + bias, pre-softplus
  be.MatMul(dt_low, w.dt_proj, &w.dt_bias, dt);

  Tensor y = ctx.ws->Take(DType::kF32, {n, di});
  MambaScanArgs args;
  args.x = xc;
  args.dt = dt;
  args.A = w.A;
  args.B = b;
  args.C = cc;
  args.D = w.D;
  args.z = z;
  args.state = ssm_state;
  args.y = y;
  be.MambaScan(*ctx.layout, args);

  be.MatMul(y, w.out_proj, OrNull(w.out_proj_bias), out);
}

}  // namespace jamba
