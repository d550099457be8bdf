#include "engine/model/workspace.h"

#include <algorithm>

namespace jamba {

Tensor Workspace::Take(DType dtype, std::initializer_list<int64_t> shape) {
  int64_t bytes = static_cast<int64_t>(DTypeSize(dtype));
  for (int64_t d : shape) bytes *= d;
  bytes = (bytes + 63) / 64 * 64;
  while (current_ < chunks_.size() && chunks_[current_].used + bytes > chunks_[current_].size) {
    ++current_;
  }
  if (current_ == chunks_.size()) {
    constexpr int64_t kMinChunk = 8 << 20;
    const int64_t size = std::max(bytes, kMinChunk);
    auto buf = backend_->Allocate(DType::kU8, {size});
    JAMBA_CHECK_MSG(buf.ok(), "workspace allocation failed");
    chunks_.push_back(Chunk{std::move(buf).value(), size, 0});
  }
  Chunk& c = chunks_[current_];
  uint8_t* base = c.buffer->tensor().byte_ptr() + c.used;
  c.used += bytes;
  Tensor t;
  t.data = base;
  t.dtype = dtype;
  t.device = backend_->device();
  t.ndim = static_cast<int>(shape.size());
  int i = 0;
  for (int64_t d : shape) t.shape[i++] = d;
  int64_t s = 1;
  for (int k = t.ndim - 1; k >= 0; --k) {
    t.stride[k] = s;
    s *= t.shape[k];
  }
  return t;
}

void Workspace::Reset() {
  for (Chunk& c : chunks_) c.used = 0;
  current_ = 0;
}

int64_t Workspace::capacity_bytes() const {
  int64_t total = 0;
  for (const Chunk& c : chunks_) total += c.size;
  return total;
}

}  // namespace jamba
