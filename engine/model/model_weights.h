// Weights of the layers one process holds, grouped by block. Tensors are views: the memory is
// owned by the WeightLoader that produced them (device buffers) or by the checkpoint's file
// mapping (weights used in place). Large matrices are f32 or bf16 (LoadOptions::weight_dtype);
// vectors and the conv kernel are always f32. An absent optional tensor has data == nullptr.
#ifndef JAMBA_ENGINE_MODEL_MODEL_WEIGHTS_H_
#define JAMBA_ENGINE_MODEL_MODEL_WEIGHTS_H_

#include <vector>

#include "engine/config/model_config.h"
#include "kernels/tensor.h"

namespace jamba {

inline bool Present(const Tensor& t) { return t.data != nullptr; }
inline const Tensor* OrNull(const Tensor& t) { return Present(t) ? &t : nullptr; }

struct MambaMixerWeights {
  Tensor in_proj;      // [2 Di, H]: rows [0, Di) give x, rows [Di, 2 Di) give the gate z
  Tensor in_proj_bias;  // [2 Di] optional
  Tensor conv_w;        // [Di, K] (checkpoint [Di, 1, K] squeezed)
  Tensor conv_b;        // [Di] optional
  Tensor x_proj;        // [R + 2N, Di]: output columns [dt | B | C]
  Tensor dt_proj;       // [Di, R]
  Tensor dt_bias;       // [Di]
  Tensor A;             // [Di, N] = -exp(A_log), computed at load
  Tensor D;             // [Di]
  Tensor out_proj;      // [H, Di]
  Tensor out_proj_bias;  // [H] optional
  Tensor dt_norm;       // [R] Jamba only
  Tensor b_norm;        // [N] Jamba only
  Tensor c_norm;        // [N] Jamba only
};

struct AttentionWeights {
  Tensor q_proj;  // [nh hd, H]
  Tensor k_proj;  // [nkv hd, H]
  Tensor v_proj;  // [nkv hd, H]
  Tensor o_proj;  // [H, nh hd]
};

// A SwiGLU MLP: down(silu(gate x) * up x). Either `gate_up` (fused [2I, H], gate rows first) or
// separate `gate` and `up` ([I, H] each) are present.
struct MlpWeights {
  Tensor gate_up;
  Tensor gate;
  Tensor up;
  Tensor down;  // [H, I]
  // Per-row scales [rows] f32 of the matrices above when they are int8 (experts loaded with
  // LoadOptions::int8_experts); empty otherwise.
  Tensor gate_up_scale;
  Tensor gate_scale;
  Tensor up_scale;
  Tensor down_scale;
};

// One matrix of every expert, in expert order, as Backend::MatMulGrouped takes it.
struct GroupedMatrix {
  std::vector<Tensor> matrices;  // [E] views of MlpWeights' tensors
  std::vector<Tensor> scales;    // [E] when the matrices are int8, else empty
};

struct MoeWeights {
  Tensor router;                  // [E, H]
  std::vector<MlpWeights> experts;  // size E; experts not held by this process have no `down`
  // Set by LoadExperts when this process holds every expert: the experts' matrices grouped for
  // the one-launch decode path, built once so that steps do not rebuild the lists. Either
  // gate_up (fused checkpoints) or gate and up are filled.
  bool holds_every_expert = false;
  GroupedMatrix gate_up, gate, up, down;
};

struct LayerWeights {
  int layer_index = 0;  // index in the full model
  LayerSpec spec;
  Tensor input_norm;  // [H]
  MambaMixerWeights mamba;
  AttentionWeights attention;
  Tensor ffn_norm;  // [H] (absent when spec.ffn == kNone)
  MlpWeights mlp;
  MoeWeights moe;
};

struct ModelWeights {
  Tensor embedding;   // [V, H]; present when the shard includes the embedding
  Tensor final_norm;  // [H]; present when the shard includes the head
  Tensor lm_head;     // [V, H]; may be the embedding tensor itself (tied)
  std::vector<LayerWeights> layers;  // the shard's layers, in order
};

}  // namespace jamba

#endif  // JAMBA_ENGINE_MODEL_MODEL_WEIGHTS_H_
