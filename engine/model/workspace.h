// Scratch memory for activations of one forward pass: a bump allocator over device buffers.
// Tensors handed out stay valid until Reset(); chunks are kept across Reset() so steady-state
// forwards allocate nothing.
#ifndef JAMBA_ENGINE_MODEL_WORKSPACE_H_
#define JAMBA_ENGINE_MODEL_WORKSPACE_H_

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace jamba {

class Workspace {
 public:
  explicit Workspace(Backend* backend) : backend_(backend) {}

  // A contiguous uninitialised tensor. Aborts only if the device is out of memory, which the
  // engine prevents by sizing batches (a status would leave half-run layers behind).
  Tensor Take(DType dtype, std::initializer_list<int64_t> shape);
  void Reset();
  int64_t capacity_bytes() const;

 private:
  struct Chunk {
    std::unique_ptr<DeviceBuffer> buffer;
    int64_t size = 0;
    int64_t used = 0;
  };
  Backend* backend_;
  std::vector<Chunk> chunks_;
  size_t current_ = 0;
};

}  // namespace jamba

#endif  // JAMBA_ENGINE_MODEL_WORKSPACE_H_
