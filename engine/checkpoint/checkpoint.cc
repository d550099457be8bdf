#include "engine/checkpoint/checkpoint.h"

#include <sys/stat.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/mapped_file.h"
#include "common/status_macros.h"
#include "engine/checkpoint/synthetic_weights.h"
#include "engine/config/strict_json.h"
#include "nlohmann/json.hpp"

namespace jamba {
namespace {

using Json = nlohmann::json;

constexpr char kIndexName[] = "model.safetensors.index.json";
constexpr char kSingleName[] = "model.safetensors";

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// A shard must be a file of the checkpoint folder itself: an index must not be able to make
// us map files elsewhere ("../x", "/etc/x", "sub/x"). Symbolic links in the folder are fine
// (the Hugging Face cache links snapshot files to its blob store).
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

// `status` with `context` appended to its message, same code.
absl::Status WithContext(const absl::Status& status, const std::string& context) {
  return absl::Status(status.code(), absl::StrCat(status.message(), " ", context));
}

// At most the first 8 dimensions (a hostile header can declare millions).
std::string ShapeString(const std::vector<int64_t>& shape) {
  constexpr size_t kShown = 8;
  if (shape.size() <= kShown) return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
  return absl::StrCat("[", absl::StrJoin(shape.begin(), shape.begin() + kShown, ", "), ", ... (",
                      shape.size(), " dimensions)]");
}

}  // namespace

absl::StatusOr<std::map<std::string, std::string>> ParseSafetensorsIndex(
    const std::string& json_text, const std::string& source) {
  auto error = [&](const std::string& message) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", message));
  };
  absl::StatusOr<Json> parsed = ParseStrictJson(json_text);
  if (!parsed.ok()) return error(std::string(parsed.status().message()));
  const Json& root = *parsed;
  if (!root.is_object()) {
    return error(absl::StrCat("must be a JSON object, got ", root.type_name()));
  }
  auto map = root.find("weight_map");
  if (map == root.end()) return error("missing 'weight_map'");
  if (!map->is_object()) {
    return error(absl::StrCat("'weight_map' must be an object, got ", map->type_name()));
  }
  if (map->empty()) return error("'weight_map' lists no tensors");
  std::map<std::string, std::string> result;
  for (auto it = map->begin(); it != map->end(); ++it) {
    if (!it->is_string()) {
      return error(absl::StrCat("tensor ", QuoteForError(it.key()),
                                ": shard must be a string, got ", it->type_name()));
    }
    const std::string& shard = it->get_ref<const std::string&>();
    if (!IsPlainFileName(shard)) {
      return error(absl::StrCat("tensor ", QuoteForError(it.key()), ": shard ",
                                QuoteForError(shard),
                                " is not a file name in the checkpoint folder"));
    }
    result.emplace(it.key(), shard);
  }
  return result;
}

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  auto ckpt = std::unique_ptr<Checkpoint>(new Checkpoint());
  ckpt->dir_ = dir;
  JAMBA_ASSIGN_OR_RETURN(ckpt->config_, LoadModelConfig(dir));

  const std::string index_path = absl::StrCat(dir, "/", kIndexName);
  const std::string single_path = absl::StrCat(dir, "/", kSingleName);
  if (FileExists(index_path)) {
    JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> index, MappedFile::Open(index_path));
    std::string text(reinterpret_cast<const char*>(index->data()), index->size());
    JAMBA_ASSIGN_OR_RETURN(ckpt->tensor_to_file_, ParseSafetensorsIndex(text, index_path));
  } else if (FileExists(single_path)) {
    // The single file is opened now: its header is the only list of tensor names.
    JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                           SafetensorsFile::Open(single_path));
    for (const auto& entry : file->tensors()) ckpt->tensor_to_file_[entry.first] = kSingleName;
    ckpt->files_[kSingleName] = std::move(file);
  } else {
    return absl::NotFoundError(
        absl::StrCat(dir, ": neither ", kIndexName, " nor ", kSingleName, " exists"));
  }
  // FNV-1a 64 over config.json and the (tensor, file) list: cheap, and it never opens shards.
  const std::string config_path = absl::StrCat(dir, "/config.json");
  JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> config_file, MappedFile::Open(config_path));
  uint64_t hash = 0xcbf29ce484222325ull;
  auto mix = [&hash](const void* data, size_t size) {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < size; ++i) hash = (hash ^ p[i]) * 0x100000001b3ull;
  };
  mix(config_file->data(), config_file->size());
  for (const auto& [name, file] : ckpt->tensor_to_file_) {
    mix(name.data(), name.size() + 1);  // + the terminating NUL as a separator
    mix(file.data(), file.size() + 1);
  }
  ckpt->fingerprint_ = absl::StrFormat("%016x", hash);
  return ckpt;
}

std::unique_ptr<Checkpoint> Checkpoint::Synthetic(ModelConfig config, uint64_t seed) {
  std::unique_ptr<Checkpoint> c(new Checkpoint());
  c->dir_ = "<synthetic>";
  c->config_ = std::move(config);
  c->synthetic_ = true;
  c->fingerprint_ = "synthetic";
  c->synthetic_seed_ = seed;
  return c;
}

std::unique_ptr<Checkpoint> Checkpoint::ShapesOnly(ModelConfig config) {
  std::unique_ptr<Checkpoint> c = Synthetic(std::move(config), 0);
  c->dir_ = "<shapes-only>";
  c->fingerprint_ = "shapes-only";
  c->has_data_ = false;
  return c;
}

bool Checkpoint::Has(const std::string& name) const {
  if (synthetic_) {
    std::lock_guard<std::mutex> lock(mu_);
    return synthetic_tensors_.count(name) != 0;
  }
  return tensor_to_file_.count(name) != 0;
}

absl::StatusOr<SafetensorsFile*> Checkpoint::FileFor(const std::string& name) {
  auto it = tensor_to_file_.find(name);
  if (it == tensor_to_file_.end()) {
    return absl::NotFoundError(
        absl::StrCat(dir_, ": tensor ", QuoteForError(name), " not found in the checkpoint"));
  }
  auto opened = files_.find(it->second);
  if (opened != files_.end()) return opened->second.get();
  // Not cached on failure: a later request retries (and reports the error again).
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(absl::StrCat(dir_, "/", it->second));
  if (!file.ok()) {
    return WithContext(file.status(),
                       absl::StrCat("(while loading tensor ", QuoteForError(name), ", which ",
                                    kIndexName, " places in ", QuoteForError(it->second), ")"));
  }
  return files_.emplace(it->second, *std::move(file)).first->second.get();
}

absl::StatusOr<const SafetensorsTensor*> Checkpoint::Get(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  if (synthetic_) {
    auto it = synthetic_tensors_.find(name);
    if (it == synthetic_tensors_.end()) {
      return absl::NotFoundError(
          absl::StrCat(dir_, ": tensor ", QuoteForError(name), " not created yet"));
    }
    return &it->second->meta;
  }
  JAMBA_ASSIGN_OR_RETURN(SafetensorsFile * file, FileFor(name));
  const SafetensorsTensor* t = file->Find(name);
  if (t == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(file->path(), ": tensor ", QuoteForError(name),
                                                   " is listed in ", kIndexName,
                                                   " but missing from this file"));
  }
  return t;
}

absl::StatusOr<const SafetensorsTensor*> Checkpoint::GetChecked(const std::string& name,
                                                                const std::vector<int64_t>& shape) {
  if (synthetic_) {
    std::lock_guard<std::mutex> lock(mu_);
    if (synthetic_tensors_.count(name) == 0) {
      auto st = std::make_unique<SyntheticTensor>();
      if (has_data_) st->bits = SyntheticWeightBf16(name, shape, synthetic_seed_);
      st->meta.name = name;
      st->meta.dtype = DType::kBF16;
      st->meta.shape = shape;
      st->meta.data =
          has_data_ ? reinterpret_cast<const uint8_t*>(st->bits.data()) : nullptr;
      int64_t numel = 1;
      for (int64_t d : shape) numel *= d;
      st->meta.nbytes = static_cast<size_t>(numel) * sizeof(uint16_t);
      st->meta.file = dir_;
      synthetic_tensors_[name] = std::move(st);
    }
  }
  JAMBA_ASSIGN_OR_RETURN(const SafetensorsTensor* t, Get(name));
  if (t->shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat(t->file, ": tensor ", QuoteForError(name),
                                                   ": expected shape ", ShapeString(shape),
                                                   ", got ", ShapeString(t->shape)));
  }
  if (t->dtype != DType::kF32 && t->dtype != DType::kBF16 && t->dtype != DType::kF16) {
    return absl::InvalidArgumentError(absl::StrCat(t->file, ": tensor ", QuoteForError(name),
                                                   ": expected dtype f32, bf16 or f16, got ",
                                                   DTypeName(t->dtype)));
  }
  return t;
}

std::vector<std::string> Checkpoint::TensorNames() const {
  std::vector<std::string> names;
  if (synthetic_) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& entry : synthetic_tensors_) names.push_back(entry.first);
    return names;
  }
  names.reserve(tensor_to_file_.size());
  for (const auto& entry : tensor_to_file_) names.push_back(entry.first);
  return names;
}

std::vector<std::string> Checkpoint::OpenedFiles() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> names;
  for (const auto& entry : files_) names.push_back(entry.first);
  return names;
}

}  // namespace jamba
