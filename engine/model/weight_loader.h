// Turns checkpoint tensors into backend tensors of the dtype the engine computes with, checking
// each one's presence, shape and dtype first. On the CPU backend a tensor whose stored dtype is
// the wanted one is used in place from the file mapping (no copy, and untouched pages of the
// file are never read); everything else is converted into buffers this loader owns.
// On a shapes-only checkpoint (Checkpoint::has_data() false) nothing is read or allocated:
// every tensor is counted in bytes()/parameters() and returned with null data, so the
// engine's own loading code serves as its memory accounting (engine/runtime/memory_plan.h).
#ifndef JAMBA_ENGINE_MODEL_WEIGHT_LOADER_H_
#define JAMBA_ENGINE_MODEL_WEIGHT_LOADER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/checkpoint/checkpoint.h"
#include "kernels/backend.h"

namespace jamba {

class WeightLoader {
 public:
  // `matrix_dtype`: kF32 or kBF16, the dtype of large matrices. Borrowed pointers must outlive
  // the loader and every tensor it returns.
  WeightLoader(Checkpoint* checkpoint, Backend* backend, DType matrix_dtype)
      : WeightLoader(checkpoint, backend, matrix_dtype, matrix_dtype) {}
  // `expert_dtype`: the dtype of MoE expert matrices (ExpertMatrix): matrix_dtype, or kI8 for
  // per-row int8 quantisation at load (engine/model/int8_quantize.h).
  WeightLoader(Checkpoint* checkpoint, Backend* backend, DType matrix_dtype, DType expert_dtype)
      : checkpoint_(checkpoint),
        backend_(backend),
        matrix_dtype_(matrix_dtype),
        expert_dtype_(expert_dtype) {}

  bool Has(const std::string& name) const { return checkpoint_->Has(name); }
  // Whether the checkpoint makes up tensors on demand (Checkpoint::synthetic): loaders that
  // infer a layout from which tensors exist must pick the config's default layout instead.
  bool synthetic() const { return checkpoint_->synthetic(); }

  // A 2-D weight matrix of exactly `shape` in matrix_dtype.
  absl::StatusOr<Tensor> Matrix(const std::string& name, std::vector<int64_t> shape);
  // Matrix `index` of a stacked 3-D tensor `name` of shape [count, rows, cols].
  absl::StatusOr<Tensor> StackedMatrix(const std::string& name, int64_t count, int64_t index,
                                       int64_t rows, int64_t cols);
  // An expert's weight matrix of exactly `shape` (2-D) in expert_dtype; when that is kI8,
  // `*scale` receives its per-row scales ([rows] f32), else it is left empty.
  absl::StatusOr<Tensor> ExpertMatrix(const std::string& name, std::vector<int64_t> shape,
                                      Tensor* scale);
  // ExpertMatrix for matrix `index` of a stacked [count, rows, cols] tensor.
  absl::StatusOr<Tensor> StackedExpertMatrix(const std::string& name, int64_t count,
                                             int64_t index, int64_t rows, int64_t cols,
                                             Tensor* scale);
  // A tensor of exactly `shape` converted to f32, returned as a contiguous tensor of shape
  // `view_shape` (same element count), e.g. conv1d [Di, 1, K] viewed as [Di, K].
  absl::StatusOr<Tensor> F32(const std::string& name, std::vector<int64_t> shape,
                             std::vector<int64_t> view_shape = {});
  // F32() then x -> -exp(x): the Mamba A matrix from A_log (pitfall 7).
  absl::StatusOr<Tensor> NegExpF32(const std::string& name, std::vector<int64_t> shape);

  // Bytes of weights held for this process (views into the mapping included).
  int64_t bytes() const { return bytes_; }
  // Parameters (elements) of those weights.
  int64_t parameters() const { return parameters_; }
  // Transfers ownership of the converted buffers (the model keeps them alive).
  std::vector<std::unique_ptr<DeviceBuffer>> TakeBuffers() { return std::move(buffers_); }

 private:
  // A null-data tensor of `dtype`/`dims` on the backend's device (shapes-only checkpoints).
  Tensor AccountingView(DType dtype, const std::vector<int64_t>& dims) const;
  // Rows x cols elements from `elem_offset` of `t`, quantised per row to int8.
  absl::StatusOr<Tensor> Quantize(const SafetensorsTensor& t, size_t elem_offset, int64_t rows,
                                  int64_t cols, Tensor* scale);
  absl::StatusOr<Tensor> Convert(const SafetensorsTensor& t, size_t elem_offset, int64_t numel,
                                 DType want, std::vector<int64_t> dims);

  Checkpoint* checkpoint_;
  Backend* backend_;
  DType matrix_dtype_;
  DType expert_dtype_;
  std::vector<std::unique_ptr<DeviceBuffer>> buffers_;
  int64_t bytes_ = 0;
  int64_t parameters_ = 0;
};

}  // namespace jamba

#endif  // JAMBA_ENGINE_MODEL_WEIGHT_LOADER_H_
