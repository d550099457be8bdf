// Fixed-size per-sequence state of the Mamba layers a process holds: for each such layer a
// conv window [slots, Di, K-1] and an SSM state [slots, Di, N], both f32 and device-resident.
// A sequence owns one slot index, the same in every layer. The pool is sized at start; a
// sequence that finds no free slot waits (the caller sees ResourceExhausted and retries later).
#ifndef JAMBA_ENGINE_STATE_MAMBA_STATE_POOL_H_
#define JAMBA_ENGINE_STATE_MAMBA_STATE_POOL_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace jamba {

class MambaStatePool {
 public:
  // num_layers Mamba layers of inner width `d_inner`, state size `d_state`, conv width `d_conv`.
  static absl::StatusOr<std::unique_ptr<MambaStatePool>> Create(Backend* backend,
                                                                int64_t num_layers,
                                                                int64_t d_inner, int64_t d_state,
                                                                int64_t d_conv, int32_t slots);

  // Bytes of conv window + SSM state one sequence takes in `num_layers` Mamba layers (f32).
  static int64_t SequenceBytes(int64_t num_layers, int64_t d_inner, int64_t d_state,
                               int64_t d_conv) {
    return num_layers * d_inner * (d_conv - 1 + d_state) * static_cast<int64_t>(sizeof(float));
  }

  // A free slot, or ResourceExhausted. A fresh slot's contents are undefined: kernels ignore
  // stored state while a sequence has n_past == 0.
  absl::StatusOr<int32_t> Allocate();
  void Free(int32_t slot);  // slot must be allocated (programmer error otherwise)

  int32_t capacity() const { return static_cast<int32_t>(in_use_.size()); }
  int32_t used() const { return used_; }
  // Bytes of state one sequence holds across all layers of this pool.
  int64_t BytesPerSequence() const { return bytes_per_seq_; }

  const Tensor& conv(int64_t layer) const { return conv_[layer]->tensor(); }  // [slots, Di, K-1]
  const Tensor& ssm(int64_t layer) const { return ssm_[layer]->tensor(); }    // [slots, Di, N]

 private:
  MambaStatePool() = default;

  std::vector<std::unique_ptr<DeviceBuffer>> conv_, ssm_;
  std::vector<bool> in_use_;
  std::vector<int32_t> free_list_;
  int32_t used_ = 0;
  int64_t bytes_per_seq_ = 0;
};

}  // namespace jamba

#endif  // JAMBA_ENGINE_STATE_MAMBA_STATE_POOL_H_
