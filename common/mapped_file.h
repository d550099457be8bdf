// Read-only memory map of a whole file. The mapping lives as long as the object; views into
// it (absl::string_view, raw pointers) must not outlive it.
#ifndef JAMBA_COMMON_MAPPED_FILE_H_
#define JAMBA_COMMON_MAPPED_FILE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace jamba {

class MappedFile {
 public:
  // Maps `path` read-only. Errors name the path and the failing system call; anything but a
  // regular file is InvalidArgument. The file must not be truncated while mapped (reading a
  // page past the new end raises SIGBUS); checkpoints are immutable once written.
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}

  std::string path_;
  const uint8_t* data_;  // nullptr for an empty file
  size_t size_;
};

}  // namespace jamba

#endif  // JAMBA_COMMON_MAPPED_FILE_H_
