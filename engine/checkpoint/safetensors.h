// Parser of the safetensors format: 8-byte little-endian header length N, N bytes of JSON
// header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the
// data. Every field is validated before use: a truncated file, a header that lies about sizes
// or offsets (the tensors must tile the data section exactly, as the reference implementation
// requires), overlapping or out-of-range data, a byte count that disagrees with shape * dtype,
// an unknown dtype, a duplicate key or absurdly nested JSON yields InvalidArgument naming the
// file and, where one is involved, the tensor. Never reads out of bounds.
#ifndef JAMBA_ENGINE_CHECKPOINT_SAFETENSORS_H_
#define JAMBA_ENGINE_CHECKPOINT_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/mapped_file.h"
#include "kernels/dtype.h"

namespace jamba {

struct SafetensorsTensor {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  // Into the mapping owned by the SafetensorsFile. Aligned to the dtype size only if the file
  // is (the reference writer pads the header to 8 bytes and orders tensors by alignment);
  // read through memcpy or check alignment before casting.
  const uint8_t* data = nullptr;
  size_t nbytes = 0;  // == product(shape) * DTypeSize(dtype), checked
  std::string file;   // path, for error messages

  int64_t numel() const;
};

class SafetensorsFile {
 public:
  // Maps and validates `path`.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  // Validates an in-memory buffer (used by the fuzzer); `data` must outlive the result.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Parse(const uint8_t* data, size_t size,
                                                                const std::string& name);

  const SafetensorsTensor* Find(const std::string& name) const;  // nullptr if absent
  const std::map<std::string, SafetensorsTensor>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }

 private:
  SafetensorsFile() = default;

  std::string path_;
  std::unique_ptr<MappedFile> mapping_;  // null when parsed from a caller's buffer
  std::map<std::string, SafetensorsTensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Writes a safetensors file (used by tests and tools). Tensors are written in map order.
struct SafetensorsWriteTensor {
  DType dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};
absl::Status WriteSafetensors(const std::string& path,
                              const std::map<std::string, SafetensorsWriteTensor>& tensors);
// Same, with a "__metadata__" string map (e.g. {"format": "pt"} as torch writes).
absl::Status WriteSafetensors(const std::string& path,
                              const std::map<std::string, SafetensorsWriteTensor>& tensors,
                              const std::map<std::string, std::string>& metadata);

}  // namespace jamba

#endif  // JAMBA_ENGINE_CHECKPOINT_SAFETENSORS_H_
