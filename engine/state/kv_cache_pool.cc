#include "engine/state/kv_cache_pool.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace jamba {

absl::StatusOr<std::unique_ptr<KvCachePool>> KvCachePool::Create(
    Backend* backend, int64_t num_layers, int64_t num_kv_heads, int64_t head_dim,
    int32_t block_size, int32_t num_blocks) {
  if (block_size < 1 || num_blocks < 0 || num_layers < 0) {
    return absl::InvalidArgumentError("KvCachePool: bad sizes");
  }
  std::unique_ptr<KvCachePool> pool(new KvCachePool());
  pool->block_size_ = block_size;
  for (int64_t l = 0; l < num_layers; ++l) {
    JAMBA_ASSIGN_OR_RETURN(
        auto k, backend->Allocate(DType::kF32, {num_blocks, block_size, num_kv_heads, head_dim}));
    JAMBA_ASSIGN_OR_RETURN(
        auto v, backend->Allocate(DType::kF32, {num_blocks, block_size, num_kv_heads, head_dim}));
    pool->k_.push_back(std::move(k));
    pool->v_.push_back(std::move(v));
  }
  pool->in_use_.assign(num_blocks, false);
  for (int32_t b = num_blocks - 1; b >= 0; --b) pool->free_list_.push_back(b);
  pool->bytes_per_token_ = TokenBytes(num_layers, num_kv_heads, head_dim);
  return pool;
}

absl::Status KvCachePool::Reserve(std::vector<int32_t>* table, int64_t tokens) {
  const int32_t need = BlocksFor(tokens, block_size_) - static_cast<int32_t>(table->size());
  if (need <= 0) return absl::OkStatus();
  if (need > static_cast<int32_t>(free_list_.size())) {
    return absl::ResourceExhaustedError(absl::StrCat("KV cache: need ", need, " blocks, ",
                                                     free_list_.size(), " free"));
  }
  for (int32_t i = 0; i < need; ++i) {
    int32_t b = free_list_.back();
    free_list_.pop_back();
    in_use_[b] = true;
    table->push_back(b);
  }
  used_ += need;
  return absl::OkStatus();
}

void KvCachePool::Release(std::vector<int32_t>* table) {
  for (int32_t b : *table) {
    JAMBA_CHECK(b >= 0 && b < num_blocks() && in_use_[b]);
    in_use_[b] = false;
    free_list_.push_back(b);
  }
  used_ -= static_cast<int32_t>(table->size());
  table->clear();
}

}  // namespace jamba
