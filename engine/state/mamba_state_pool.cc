#include "engine/state/mamba_state_pool.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace jamba {

absl::StatusOr<std::unique_ptr<MambaStatePool>> MambaStatePool::Create(
    Backend* backend, int64_t num_layers, int64_t d_inner, int64_t d_state, int64_t d_conv,
    int32_t slots) {
  if (slots < 0 || num_layers < 0 || d_conv < 1) {
    return absl::InvalidArgumentError("MambaStatePool: bad sizes");
  }
  std::unique_ptr<MambaStatePool> pool(new MambaStatePool());
  for (int64_t l = 0; l < num_layers; ++l) {
    JAMBA_ASSIGN_OR_RETURN(auto conv,
                           backend->Allocate(DType::kF32, {slots, d_inner, d_conv - 1}));
    JAMBA_ASSIGN_OR_RETURN(auto ssm, backend->Allocate(DType::kF32, {slots, d_inner, d_state}));
    pool->conv_.push_back(std::move(conv));
    pool->ssm_.push_back(std::move(ssm));
  }
  pool->in_use_.assign(slots, false);
  for (int32_t s = slots - 1; s >= 0; --s) pool->free_list_.push_back(s);
  pool->bytes_per_seq_ = SequenceBytes(num_layers, d_inner, d_state, d_conv);
  return pool;
}

absl::StatusOr<int32_t> MambaStatePool::Allocate() {
  if (free_list_.empty()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("no free Mamba state slot (", capacity(), " in use)"));
  }
  int32_t s = free_list_.back();
  free_list_.pop_back();
  in_use_[s] = true;
  ++used_;
  return s;
}

void MambaStatePool::Free(int32_t slot) {
  JAMBA_CHECK(slot >= 0 && slot < capacity() && in_use_[slot]);
  in_use_[slot] = false;
  free_list_.push_back(slot);
  --used_;
}

}  // namespace jamba
