#include "engine/checkpoint/checkpoint.h"

#include <sys/stat.h>

#include <exception>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/mapped_file.h"
#include "common/status_macros.h"
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
// us map files elsewhere.
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name.find('/') == std::string::npos &&
         name.find("..") == std::string::npos && name.find('\0') == std::string::npos;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

std::string JsonErrorText(const char* what) {
  std::string text = what;
  if (!text.empty() && text[0] == '[') {
    size_t end = text.find("] ");
    if (end != std::string::npos) text.erase(0, end + 2);
  }
  return text;
}

}  // namespace

absl::StatusOr<std::map<std::string, std::string>> ParseSafetensorsIndex(
    const std::string& json_text, const std::string& source) {
  auto error = [&](const std::string& message) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", message));
  };
  Json root;
  try {
    root = Json::parse(json_text);
  } catch (const Json::parse_error& e) {
    return error(absl::StrCat("malformed JSON at byte ", e.byte, ": ", JsonErrorText(e.what())));
  } catch (const std::exception& e) {
    return error(absl::StrCat("malformed JSON: ", JsonErrorText(e.what())));
  }
  if (!root.is_object()) return error(absl::StrCat("must be a JSON object, got ",
                                                   root.type_name()));
  auto map = root.find("weight_map");
  if (map == root.end()) return error("missing 'weight_map'");
  if (!map->is_object()) return error(absl::StrCat("'weight_map' must be an object, got ",
                                                   map->type_name()));
  std::map<std::string, std::string> result;
  for (auto it = map->begin(); it != map->end(); ++it) {
    if (!it->is_string()) {
      return error(absl::StrCat("tensor '", it.key(), "': shard must be a string, got ",
                                it->type_name()));
    }
    const std::string& shard = it->get_ref<const std::string&>();
    if (!IsPlainFileName(shard)) {
      return error(absl::StrCat("tensor '", it.key(), "': shard '", shard,
                                "' is not a file name in the checkpoint folder"));
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
    return absl::NotFoundError(absl::StrCat(dir, ": neither ", kIndexName, " nor ", kSingleName,
                                            " exists"));
  }
  return ckpt;
}

bool Checkpoint::Has(const std::string& name) const {
  return tensor_to_file_.count(name) != 0;
}

absl::StatusOr<SafetensorsFile*> Checkpoint::FileFor(const std::string& name) {
  auto it = tensor_to_file_.find(name);
  if (it == tensor_to_file_.end()) {
    return absl::NotFoundError(absl::StrCat(dir_, ": tensor '", name, "' not found"));
  }
  auto opened = files_.find(it->second);
  if (opened != files_.end()) return opened->second.get();
  JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                         SafetensorsFile::Open(absl::StrCat(dir_, "/", it->second)));
  return files_.emplace(it->second, std::move(file)).first->second.get();
}

absl::StatusOr<const SafetensorsTensor*> Checkpoint::Get(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  JAMBA_ASSIGN_OR_RETURN(SafetensorsFile * file, FileFor(name));
  const SafetensorsTensor* t = file->Find(name);
  if (t == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(file->path(), ": tensor '", name,
                                                   "' is listed in ", kIndexName,
                                                   " but missing from this file"));
  }
  return t;
}

absl::StatusOr<const SafetensorsTensor*> Checkpoint::GetChecked(
    const std::string& name, const std::vector<int64_t>& shape) {
  JAMBA_ASSIGN_OR_RETURN(const SafetensorsTensor* t, Get(name));
  if (t->shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat(t->file, ": tensor '", name,
                                                   "': expected shape ", ShapeString(shape),
                                                   ", got ", ShapeString(t->shape)));
  }
  if (t->dtype != DType::kF32 && t->dtype != DType::kBF16 && t->dtype != DType::kF16) {
    return absl::InvalidArgumentError(absl::StrCat(t->file, ": tensor '", name,
                                                   "': expected dtype f32, bf16 or f16, got ",
                                                   DTypeName(t->dtype)));
  }
  return t;
}

std::vector<std::string> Checkpoint::TensorNames() const {
  std::vector<std::string> names;
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
