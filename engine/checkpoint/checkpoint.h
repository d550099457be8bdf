// A Hugging Face checkpoint folder: config.json plus model.safetensors or shards listed in
// model.safetensors.index.json. Files are memory-mapped lazily: a shard is opened only when
// one of its tensors is requested, and tensor bytes are never touched until used, so a worker
// that needs a few layers or experts reads only those.
#ifndef JAMBA_ENGINE_CHECKPOINT_CHECKPOINT_H_
#define JAMBA_ENGINE_CHECKPOINT_CHECKPOINT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/config/model_config.h"

namespace jamba {

// Parses the text of a model.safetensors.index.json: its "weight_map" (tensor name -> shard
// file name). Shard names must be plain file names in the same folder (no '/', no "..").
// `source` is used in error messages only.
absl::StatusOr<std::map<std::string, std::string>> ParseSafetensorsIndex(
    const std::string& json_text, const std::string& source);

// Thread-safe: Get/GetChecked may be called concurrently (opening a shard is serialised).
// Returned tensors stay valid as long as the Checkpoint.
class Checkpoint {
 public:
  // Opens `dir`: parses config.json, and either the index (shards are opened lazily) or the
  // single model.safetensors. Errors name the offending file.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir);

  // A checkpoint with no files that holds, for benchmarks, whatever tensor the model loader
  // asks for: GetChecked(name, shape) creates `name` with that shape, bf16, filled with random
  // values suited to its role (synthetic_weights.h); Has() and Get() see only tensors created
  // so far, so loaders pick their default tensor layout (per-expert, untied where the config
  // does not tie).
  static std::unique_ptr<Checkpoint> Synthetic(ModelConfig config, uint64_t seed);
  // Like Synthetic, but tensors carry only their name, dtype (bf16, as the Hub checkpoints)
  // and shape: data is null. For memory accounting (engine/runtime/memory_plan.h): a
  // WeightLoader on such a checkpoint counts bytes and parameters and allocates nothing.
  static std::unique_ptr<Checkpoint> ShapesOnly(ModelConfig config);
  // Synthetic or ShapesOnly: tensors exist once asked for, so "the file lacks X" means nothing.
  bool synthetic() const { return synthetic_; }
  // False for ShapesOnly checkpoints: their tensors have no bytes to read.
  bool has_data() const { return has_data_; }

  const ModelConfig& config() const { return config_; }
  // 16 hex digits identifying the checkpoint: a hash of config.json's bytes and of every tensor
  // name with the file holding it. Workers report it so the gateway can refuse to assemble a
  // cluster from different checkpoints. "synthetic" for Synthetic().
  const std::string& fingerprint() const { return fingerprint_; }
  const std::string& dir() const { return dir_; }

  bool Has(const std::string& name) const;
  // The tensor, or NotFound naming the tensor and the folder.
  absl::StatusOr<const SafetensorsTensor*> Get(const std::string& name);
  // Get() plus a check of shape and that the dtype is one of f32/bf16/f16; errors name the
  // file, the tensor, and the expected vs actual shape.
  absl::StatusOr<const SafetensorsTensor*> GetChecked(const std::string& name,
                                                      const std::vector<int64_t>& shape);

  // All tensor names (from the index or the single file), sorted.
  std::vector<std::string> TensorNames() const;
  // File names (relative to dir()) of the shards opened so far, sorted (for tests of lazy
  // loading).
  std::vector<std::string> OpenedFiles() const;

  // Used by the model loader to override config values it re-derives from tensor shapes.
  ModelConfig* mutable_config() { return &config_; }

 private:
  Checkpoint() = default;
  // The opened file holding tensor `name`; requires mu_ held.
  absl::StatusOr<SafetensorsFile*> FileFor(const std::string& name);

  std::string dir_;
  ModelConfig config_;
  std::string fingerprint_;
  std::map<std::string, std::string> tensor_to_file_;  // tensor name -> file name in dir_
  mutable std::mutex mu_;  // guards files_
  std::map<std::string, std::unique_ptr<SafetensorsFile>> files_;  // opened so far

  struct SyntheticTensor {
    SafetensorsTensor meta;      // data points into `bits`
    std::vector<uint16_t> bits;  // bf16
  };
  bool synthetic_ = false;
  bool has_data_ = true;
  uint64_t synthetic_seed_ = 0;
  std::map<std::string, std::unique_ptr<SyntheticTensor>> synthetic_tensors_;  // guarded by mu_
};

}  // namespace jamba

#endif  // JAMBA_ENGINE_CHECKPOINT_CHECKPOINT_H_
