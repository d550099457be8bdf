#include "engine/model/model.h"

#include <chrono>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/model/arch/architecture.h"
#include "engine/model/blocks/attention.h"
#include "engine/model/blocks/mamba_mixer.h"
#include "engine/model/blocks/mlp.h"
#include "engine/model/blocks/moe.h"
#include "engine/model/weight_loader.h"

namespace jamba {

absl::StatusOr<std::unique_ptr<Model>> Model::Load(const std::string& dir,
                                                   const LoadOptions& options, Backend* backend) {
  JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> checkpoint, Checkpoint::Open(dir));
  return Load(std::move(checkpoint), options, backend);
}

absl::StatusOr<std::unique_ptr<Model>> Model::Load(std::unique_ptr<Checkpoint> checkpoint,
                                                   const LoadOptions& options, Backend* backend) {
  if (options.weight_dtype != DType::kF32 && options.weight_dtype != DType::kBF16) {
    return absl::InvalidArgumentError("weight dtype must be f32 or bf16");
  }
  std::unique_ptr<Model> model(new Model());
  model->checkpoint_ = std::move(checkpoint);
  Checkpoint& ckpt = *model->checkpoint_;
  const ArchitectureSpec& arch = ArchitectureFor(ckpt.config().arch);
  JAMBA_RETURN_IF_ERROR(arch.resolve_config(ckpt, ckpt.mutable_config()));
  const ModelConfig& c = ckpt.config();

  const ShardSpec& s = options.shard;
  const int64_t end = s.layer_end < 0 ? c.num_layers : s.layer_end;
  if (s.layer_begin < 0 || s.layer_begin > end || end > c.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("layer range [", s.layer_begin, ", ", end,
                                                   ") is outside the model's ", c.num_layers,
                                                   " layers"));
  }
  model->layer_begin_ = s.layer_begin;
  model->layer_end_ = end;
  model->experts_only_ = s.experts_only;
  const bool embedding = !s.experts_only && s.embedding.value_or(s.layer_begin == 0);
  const bool head = !s.experts_only && s.head.value_or(end == c.num_layers);

  if (s.experts_only && (arch.moe_names == nullptr || c.NumMoeLayers() == 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        ckpt.dir(), ": experts_only: a ", ArchitectureName(c.arch), " model has no experts"));
  }
  WeightLoader loader(&ckpt, backend, options.weight_dtype,
                      options.int8_experts ? DType::kI8 : options.weight_dtype);
  JAMBA_RETURN_IF_ERROR(arch.load_globals(loader, c, embedding, head, &model->weights_));
  model->embeds_ = embedding;
  for (int64_t i = s.layer_begin; i < end; ++i) {
    LayerWeights lw;
    lw.layer_index = static_cast<int>(i);
    lw.spec = c.layers[i];
    ExpertFilter filter;
    if (s.want_expert) filter = [&s, i](int64_t e) { return s.want_expert(i, e); };
    if (!s.experts_only) {
      JAMBA_RETURN_IF_ERROR(arch.load_layer(loader, c, i, filter, &lw));
      model->pool_index_.push_back(lw.spec.mixer == MixerKind::kMamba ? model->num_mamba_++
                                                                      : model->num_attention_++);
    } else {
      if (lw.spec.ffn == FfnKind::kMoe) {
        JAMBA_RETURN_IF_ERROR(LoadExperts(loader, c, arch.moe_names(loader, i), filter, &lw.moe));
      }
      model->pool_index_.push_back(-1);  // no mixer, no state
    }
    model->weights_.layers.push_back(std::move(lw));
  }
  model->weight_bytes_ = loader.bytes();
  model->num_parameters_ = loader.parameters();
  model->buffers_ = loader.TakeBuffers();
  return model;
}

void Model::Embed(const ForwardContext& ctx, const Tensor& ids, const Tensor& hidden) const {
  JAMBA_CHECK(has_embedding());
  ctx.backend->Embed(weights_.embedding, ids, hidden);
}

bool Model::HoldsExpert(int64_t layer, int64_t expert) const {
  if (layer < layer_begin_ || layer >= layer_end_) return false;
  const LayerWeights& lw = weights_.layers[layer - layer_begin_];
  return lw.spec.ffn == FfnKind::kMoe && expert >= 0 &&
         expert < static_cast<int64_t>(lw.moe.experts.size()) &&
         Present(lw.moe.experts[expert].down);
}

void Model::ExpertForward(const ForwardContext& ctx, int64_t layer, int64_t expert, const Tensor& x,
                          const Tensor& out) const {
  JAMBA_CHECK(HoldsExpert(layer, expert));
  MlpForward(ctx, weights_.layers[layer - layer_begin_].moe.experts[expert], x, out);
}

absl::Status Model::ForwardLayers(const ForwardContext& ctx, const StatePools& pools,
                                  const Tensor& hidden) const {
  LayerPass pass(this, ctx, pools, hidden);
  while (true) {
    JAMBA_ASSIGN_OR_RETURN(bool done, pass.Advance());
    if (done) return absl::OkStatus();
    JAMBA_RETURN_IF_ERROR(ctx.experts->Compute(pass.expert_layer(), pass.expert_work()));
  }
}

namespace {

double SteadySeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

LayerPass::LayerPass(const Model* model, const ForwardContext& ctx, const StatePools& pools,
                     const Tensor& hidden)
    : model_(model), ctx_(ctx), pools_(pools), hidden_(hidden) {
  JAMBA_CHECK_MSG(!model->experts_only_, "an experts-only shard has no layers to run");
  const int64_t n = hidden.dim(0), h = model->config().hidden_size;
  normed_ = ctx.ws->Take(DType::kF32, {n, h});
  branch_ = ctx.ws->Take(DType::kF32, {n, h});
}

absl::StatusOr<bool> LayerPass::Advance() {
  const ModelConfig& c = model_->config();
  Backend& be = *ctx_.backend;
  // Wall time of one block, when the caller collects it.
  auto mark = [&]() {
    if (ctx_.times != nullptr) JAMBA_CHECK(be.Synchronize().ok());
    return ctx_.times != nullptr ? SteadySeconds() : 0.0;
  };
  auto add = [&](double* slot, double start) {
    if (ctx_.times == nullptr) return;
    JAMBA_CHECK(be.Synchronize().ok());
    *slot += SteadySeconds() - start;
  };
  const std::vector<LayerWeights>& layers = model_->weights_.layers;
  if (waiting_) {
    // The MoE block of layer next_ - 1 resumes with its experts' answers (its time includes
    // the wait on expert workers).
    waiting_ = false;
    JAMBA_RETURN_IF_ERROR(MoeFinish(ctx_, &pending_));
    be.Add(branch_, hidden_);
    if (ctx_.times != nullptr) add(&ctx_.times->moe, moe_start_);
  }
  for (; next_ < layers.size();) {
    const LayerWeights& lw = layers[next_];
    const int64_t pool_layer = model_->pool_index_[next_];
    ++next_;
    // h = h + Mixer(RMSNorm(h))
    double t = mark();
    be.RmsNorm(hidden_, &lw.input_norm, c.rms_norm_eps, normed_);
    if (lw.spec.mixer == MixerKind::kMamba) {
      JAMBA_CHECK(pools_.mamba != nullptr);
      MambaMixerForward(ctx_, lw.mamba, pools_.mamba->conv(pool_layer),
                        pools_.mamba->ssm(pool_layer), normed_, branch_);
    } else {
      JAMBA_CHECK(pools_.kv != nullptr);
      AttentionForward(ctx_, lw.attention, pools_.kv->k(pool_layer), pools_.kv->v(pool_layer),
                       normed_, branch_);
    }
    be.Add(branch_, hidden_);
    if (ctx_.times != nullptr) {
      add(lw.spec.mixer == MixerKind::kMamba ? &ctx_.times->mamba : &ctx_.times->attention, t);
    }
    // h = h + FFN(RMSNorm(h))
    if (lw.spec.ffn == FfnKind::kNone) continue;
    t = mark();
    be.RmsNorm(hidden_, &lw.ffn_norm, c.rms_norm_eps, normed_);
    if (lw.spec.ffn == FfnKind::kMoe) {
      JAMBA_RETURN_IF_ERROR(MoeBegin(ctx_, lw.layer_index, lw.moe, normed_, branch_, &pending_));
      if (!pending_.finished) {
        waiting_ = true;
        moe_start_ = t;
        return false;
      }
    } else {
      MlpForward(ctx_, lw.mlp, normed_, branch_);
    }
    be.Add(branch_, hidden_);
    if (ctx_.times != nullptr) {
      add(lw.spec.ffn == FfnKind::kMoe ? &ctx_.times->moe : &ctx_.times->mlp, t);
    }
  }
  return true;
}

void Model::Logits(const ForwardContext& ctx, const Tensor& hidden, const Tensor& rows,
                   const Tensor& logits) const {
  JAMBA_CHECK(has_head());
  const ModelConfig& c = config();
  const int64_t m = rows.dim(0);
  Tensor sel = ctx.ws->Take(DType::kF32, {m, c.hidden_size});
  ctx.backend->GatherRows(hidden, rows, sel);
  ctx.backend->RmsNorm(sel, &weights_.final_norm, c.rms_norm_eps, sel);
  ctx.backend->MatMul(sel, weights_.lm_head, nullptr, logits);
}

}  // namespace jamba
