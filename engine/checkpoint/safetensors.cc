#include "engine/checkpoint/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "engine/config/strict_json.h"
#include "nlohmann/json.hpp"

namespace jamba {
namespace {

using Json = nlohmann::json;

// Real headers are a few MB at most (one entry per tensor); the reference implementation uses
// the same bound.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DTypeEntry {
  const char* name;
  DType dtype;
};
constexpr DTypeEntry kDTypes[] = {
    {"F32", DType::kF32}, {"BF16", DType::kBF16}, {"F16", DType::kF16}, {"I32", DType::kI32},
    {"I64", DType::kI64}, {"I8", DType::kI8},     {"U8", DType::kU8},
};

const char* SafetensorsDTypeName(DType t) {
  for (const DTypeEntry& e : kDTypes) {
    if (e.dtype == t) return e.name;
  }
  return "?";
}

// Shapes of a hostile header can have millions of dimensions; messages show the first few.
std::string ShapeString(const std::vector<int64_t>& shape) {
  constexpr size_t kShown = 8;
  if (shape.size() <= kShown) return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
  return absl::StrCat("[", absl::StrJoin(shape.begin(), shape.begin() + kShown, ", "), ", ... (",
                      shape.size(), " dimensions)]");
}

std::string JsonErrorText(const char* what) {
  std::string text = what;
  if (!text.empty() && text[0] == '[') {
    size_t end = text.find("] ");
    if (end != std::string::npos) text.erase(0, end + 2);
  }
  return text;
}

// A short rendering of a scalar or a small list of scalars, else its type: values of a
// hostile header can be huge or deeply nested.
std::string ShortDump(const Json& v) {
  auto is_small_scalar = [](const Json& x) {
    return x.is_number() || x.is_boolean() || x.is_null() ||
           (x.is_string() && x.get_ref<const std::string&>().size() <= 40);
  };
  if (is_small_scalar(v) ||
      (v.is_array() && v.size() <= 4 && std::all_of(v.begin(), v.end(), is_small_scalar))) {
    return v.dump(-1, ' ', false, Json::error_handler_t::replace);
  }
  return v.type_name();
}

// A JSON integer in [0, INT64_MAX], or nullopt-like false.
bool NonNegativeInt(const Json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
  } else if (v.is_number_integer()) {
    int64_t x = v.get<int64_t>();
    if (x < 0) return false;
    *out = static_cast<uint64_t>(x);
  } else {
    return false;
  }
  return *out <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

// Validates one header entry against the data section [0, data_size).
absl::StatusOr<SafetensorsTensor> ParseEntry(const std::string& file, const std::string& name,
                                             const Json& entry, const uint8_t* data,
                                             uint64_t data_size, uint64_t* begin_out) {
  auto error = [&](const std::string& message) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": tensor ", QuoteForError(name), ": ", message));
  };
  if (!entry.is_object()) {
    return error(absl::StrCat("entry must be an object, got ", entry.type_name()));
  }
  SafetensorsTensor t;
  t.name = name;
  t.file = file;

  auto dtype = entry.find("dtype");
  if (dtype == entry.end()) return error("missing 'dtype'");
  if (!dtype->is_string()) {
    return error(absl::StrCat("'dtype' must be a string, got ", dtype->type_name()));
  }
  const std::string& dtype_name = dtype->get_ref<const std::string&>();
  const DTypeEntry* found = nullptr;
  for (const DTypeEntry& e : kDTypes) {
    if (dtype_name == e.name) found = &e;
  }
  if (found == nullptr) {
    return error(absl::StrCat("unsupported dtype ", QuoteForError(dtype_name, 40),
                              " (supported: F32, BF16, F16, I32, I64, I8, U8)"));
  }
  t.dtype = found->dtype;

  auto shape = entry.find("shape");
  if (shape == entry.end()) return error("missing 'shape'");
  if (!shape->is_array()) {
    return error(absl::StrCat("'shape' must be a list, got ", shape->type_name()));
  }
  // Like the reference implementation, every partial product of the dimensions must fit (here:
  // in int64, so numel() and callers' index arithmetic cannot overflow), even when a later
  // dimension is 0.
  constexpr uint64_t kMaxInt64 = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  uint64_t numel = 1;
  bool overflow = false;
  for (const Json& d : *shape) {
    uint64_t dim;
    if (!NonNegativeInt(d, &dim)) {
      return error(
          absl::StrCat("'shape' entries must be non-negative integers, got ", ShortDump(d)));
    }
    t.shape.push_back(static_cast<int64_t>(dim));
    if (!overflow && (__builtin_mul_overflow(numel, dim, &numel) || numel > kMaxInt64)) {
      overflow = true;
    }
  }
  uint64_t nbytes = 0;
  if (overflow || __builtin_mul_overflow(numel, DTypeSize(t.dtype), &nbytes) ||
      nbytes > kMaxInt64) {
    return error(absl::StrCat("shape ", ShapeString(t.shape), " is too large"));
  }

  auto offsets = entry.find("data_offsets");
  if (offsets == entry.end()) return error("missing 'data_offsets'");
  uint64_t begin, end;
  if (!offsets->is_array() || offsets->size() != 2 || !NonNegativeInt((*offsets)[0], &begin) ||
      !NonNegativeInt((*offsets)[1], &end)) {
    return error(absl::StrCat("'data_offsets' must be two non-negative integers, got ",
                              ShortDump(*offsets)));
  }
  if (begin > end) {
    return error(absl::StrCat("data_offsets [", begin, ", ", end, "]: begin is after end"));
  }
  if (end > data_size) {
    return error(absl::StrCat("data_offsets [", begin, ", ", end,
                              "] run past the end of the data section (", data_size, " bytes)"));
  }
  if (end - begin != nbytes) {
    return error(absl::StrCat("data_offsets [", begin, ", ", end, "] hold ", end - begin,
                              " bytes, but shape ", ShapeString(t.shape), " of ", dtype_name,
                              " needs ", nbytes));
  }
  t.data = data + begin;
  t.nbytes = static_cast<size_t>(nbytes);
  *begin_out = begin;
  return t;
}

}  // namespace

int64_t SafetensorsTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // every partial product was checked to fit at parse time
  return n;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapping, MappedFile::Open(path));
  JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                         Parse(mapping->data(), mapping->size(), path));
  file->mapping_ = std::move(mapping);
  return file;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Parse(const uint8_t* data,
                                                                        size_t size,
                                                                        const std::string& name) {
  auto error = [&](const std::string& message) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", message));
  };
  if (size < 8) {
    return error(absl::StrCat("file is ", size, " bytes, too short for the 8-byte header length"));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = header_len << 8 | data[i];  // little-endian
  if (header_len > kMaxHeaderBytes) {
    return error(absl::StrCat("header length ", header_len, " exceeds the limit of ",
                              kMaxHeaderBytes, " bytes"));
  }
  if (header_len > size - 8) {
    return error(absl::StrCat("header length ", header_len, " exceeds the ", size - 8,
                              " bytes after the length field"));
  }
  const char* header = reinterpret_cast<const char*>(data + 8);
  absl::StatusOr<Json> parsed = ParseStrictJson(header, header + header_len);
  if (!parsed.ok()) return error(absl::StrCat("JSON header: ", parsed.status().message()));
  const Json& root = *parsed;
  if (!root.is_object()) {
    return error(absl::StrCat("header must be a JSON object, got ", root.type_name()));
  }

  auto file = std::unique_ptr<SafetensorsFile>(new SafetensorsFile());
  file->path_ = name;
  const uint8_t* section = data + 8 + header_len;
  const uint64_t section_size = size - 8 - header_len;
  std::vector<std::pair<uint64_t, const SafetensorsTensor*>> by_offset;  // (begin, tensor)
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string& key = it.key();
    if (key == "__metadata__") {
      if (!it->is_object()) {
        return error(absl::StrCat("'__metadata__' must be an object, got ", it->type_name()));
      }
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) {
          return error(absl::StrCat("'__metadata__' value of ", QuoteForError(m.key()),
                                    " must be a string, got ", m->type_name()));
        }
        file->metadata_[m.key()] = m->get<std::string>();
      }
      continue;
    }
    uint64_t begin = 0;
    JAMBA_ASSIGN_OR_RETURN(SafetensorsTensor t,
                           ParseEntry(name, key, *it, section, section_size, &begin));
    auto inserted = file->tensors_.emplace(key, std::move(t));
    by_offset.emplace_back(begin, &inserted.first->second);
  }

  // As in the reference implementation, the tensors must tile the data section exactly: in
  // offset order each starts where the previous one ended, and the last ends at the end of the
  // file. A header whose offsets were shifted, or a file with bytes appended or cut, is
  // rejected instead of being read at the wrong place.
  std::sort(by_offset.begin(), by_offset.end(), [](const auto& a, const auto& b) {
    if (a.first != b.first) return a.first < b.first;
    if (a.second->nbytes != b.second->nbytes) return a.second->nbytes < b.second->nbytes;
    return a.second->name < b.second->name;  // deterministic messages
  });
  const SafetensorsTensor* previous = nullptr;
  uint64_t expected = 0;  // end of the previous tensor
  for (const auto& [begin, t] : by_offset) {
    const uint64_t end = begin + t->nbytes;
    if (begin < expected) {
      return error(absl::StrCat("tensor ", QuoteForError(t->name), ": data_offsets [", begin, ", ",
                                end, "] overlap tensor ", QuoteForError(previous->name),
                                " which ends at ", expected));
    }
    if (begin > expected) {
      return error(absl::StrCat(
          "tensor ", QuoteForError(t->name), ": data_offsets [", begin, ", ", end,
          "] leave bytes [", expected, ", ", begin, ") of the data section unused",
          previous == nullptr ? std::string(" (the first tensor must start at 0)")
                              : absl::StrCat(" after tensor ", QuoteForError(previous->name))));
    }
    previous = t;
    expected = end;
  }
  if (expected != section_size) {
    return error(absl::StrCat(
        "the data section has ", section_size, " bytes but the tensors cover ", expected,
        previous == nullptr ? std::string(" (no tensors)")
                            : absl::StrCat(" (last: tensor ", QuoteForError(previous->name), ")"),
        "; the header does not describe this file"));
  }
  return file;
}

const SafetensorsTensor* SafetensorsFile::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

absl::Status WriteSafetensors(const std::string& path,
                              const std::map<std::string, SafetensorsWriteTensor>& tensors) {
  return WriteSafetensors(path, tensors, {});
}

absl::Status WriteSafetensors(const std::string& path,
                              const std::map<std::string, SafetensorsWriteTensor>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__") {
      return absl::InvalidArgumentError(absl::StrCat(path, ": '__metadata__' is reserved"));
    }
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0 || __builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel)) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": tensor '", name, "': bad shape ", ShapeString(t.shape)));
      }
    }
    uint64_t nbytes;
    if (__builtin_mul_overflow(numel, DTypeSize(t.dtype), &nbytes) || nbytes != t.bytes.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", name, "': ", t.bytes.size(), " bytes given, shape ",
                       ShapeString(t.shape), " of ", DTypeName(t.dtype), " needs ", numel, " * ",
                       DTypeSize(t.dtype)));
    }
    header[name] = {{"dtype", SafetensorsDTypeName(t.dtype)},
                    {"shape", t.shape},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const std::exception& e) {  // a name or metadata value that is not valid UTF-8
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": cannot encode header: ", JsonErrorText(e.what())));
  }
  // Pad with spaces so the data section starts 8-byte aligned (as the reference writer does).
  text.append((8 - text.size() % 8) % 8, ' ');

  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    return absl::PermissionDeniedError(
        absl::StrCat(path, ": cannot open for writing: ", std::strerror(errno)));
  }
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(text.size() >> (8 * i));
  bool ok = std::fwrite(length, 1, 8, f) == 8 &&
            std::fwrite(text.data(), 1, text.size(), f) == text.size();
  for (const auto& entry : tensors) {
    const std::string& bytes = entry.second.bytes;
    ok = ok && std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  }
  int saved_errno = errno;
  if (std::fclose(f) != 0) ok = false;
  if (!ok) {
    return absl::InternalError(absl::StrCat(path, ": write failed: ", std::strerror(saved_errno)));
  }
  return absl::OkStatus();
}

}  // namespace jamba
