// Paged KV cache of the attention layers a process holds. Memory is split into fixed-size
// blocks of `block_size` token positions; every attention layer has its own K and V arrays
// [num_blocks, block_size, nkv, hd] (f32, device-resident), and a sequence's block table (the
// physical block of each logical block) is shared by all layers. Blocks are handed out and
// taken back here; capacity accounting is in blocks.
#ifndef JAMBA_ENGINE_STATE_KV_CACHE_POOL_H_
#define JAMBA_ENGINE_STATE_KV_CACHE_POOL_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace jamba {

class KvCachePool {
 public:
  static absl::StatusOr<std::unique_ptr<KvCachePool>> Create(Backend* backend,
                                                             int64_t num_layers,
                                                             int64_t num_kv_heads,
                                                             int64_t head_dim, int32_t block_size,
                                                             int32_t num_blocks);

  static int32_t BlocksFor(int64_t tokens, int32_t block_size) {
    return static_cast<int32_t>((tokens + block_size - 1) / block_size);
  }

  // Bytes of K+V one token position takes in `num_layers` attention layers (the f32 cache).
  static int64_t TokenBytes(int64_t num_layers, int64_t num_kv_heads, int64_t head_dim) {
    return num_layers * 2 * num_kv_heads * head_dim * static_cast<int64_t>(sizeof(float));
  }

  // Appends blocks to `table` until it covers `tokens` positions. All-or-nothing: on
  // ResourceExhausted the table is unchanged.
  absl::Status Reserve(std::vector<int32_t>* table, int64_t tokens);
  // Returns every block of `table` to the pool and clears it.
  void Release(std::vector<int32_t>* table);

  int32_t block_size() const { return block_size_; }
  int32_t num_blocks() const { return static_cast<int32_t>(in_use_.size()); }
  int32_t used_blocks() const { return used_; }
  int32_t free_blocks() const { return num_blocks() - used_; }
  // Bytes of K+V one token position takes across all layers of this pool.
  int64_t BytesPerToken() const { return bytes_per_token_; }

  const Tensor& k(int64_t layer) const { return k_[layer]->tensor(); }
  const Tensor& v(int64_t layer) const { return v_[layer]->tensor(); }

 private:
  KvCachePool() = default;

  int32_t block_size_ = 0;
  std::vector<std::unique_ptr<DeviceBuffer>> k_, v_;
  std::vector<bool> in_use_;
  std::vector<int32_t> free_list_;
  int32_t used_ = 0;
  int64_t bytes_per_token_ = 0;
};

}  // namespace jamba

#endif  // JAMBA_ENGINE_STATE_KV_CACHE_POOL_H_
