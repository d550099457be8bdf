#include "cli/size_command.h"

#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/flag_parser.h"
#include "engine/state/kv_cache_pool.h"
#include "nlohmann/json.hpp"

namespace jamba {
namespace {

constexpr int kExitUsage = 2;

// Binary units, three significant figures or so: "96.1 GiB", "32.0 KiB", "512 B".
std::string Bytes(int64_t n) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  if (u == 0) return absl::StrCat(n, " B");
  return absl::StrFormat(v >= 100 ? "%.0f %s" : "%.1f %s", v, kUnits[u]);
}

std::string Billions(int64_t n) { return absl::StrFormat("%.2f B", n / 1e9); }

std::string Schedule(const ModelConfig& c) {
  std::string s = absl::StrCat(ArchitectureName(c.arch), ": ", c.num_layers, " layers (",
                               c.NumLayersOf(MixerKind::kAttention), " attention, ",
                               c.NumLayersOf(MixerKind::kMamba), " Mamba");
  if (c.NumMoeLayers() > 0) {
    absl::StrAppend(&s, "; ", c.NumMoeLayers(), " MoE, ", c.num_experts, " experts, top-",
                    c.num_experts_per_tok);
  }
  return s + ")";
}

void PrintReport(const ModelConfig& c, const MemoryPlan& p, const ClusterPlan& layout,
                 const std::vector<WorkerSize>& workers, int64_t sequences, int64_t context,
                 const std::string& dtype) {
  std::cout << "model        " << Schedule(c) << "\n"
            << "parameters   " << Billions(p.parameters) << " (" << Billions(p.active_parameters)
            << " active per token)\n"
            << "weights      " << Bytes(p.weight_bytes) << " in " << dtype << ": experts "
            << Bytes(p.expert_bytes) << ", other layers "
            << Bytes(p.weight_bytes - p.expert_bytes - p.globals_bytes)
            << ", embedding + head " << Bytes(p.globals_bytes) << "\n";
  if (p.kv_bytes_per_token > 0) {
    std::cout << "KV cache     " << Bytes(p.kv_bytes_per_token) << " per token (f32, "
              << c.NumLayersOf(MixerKind::kAttention) << " attention layers)\n";
  }
  if (p.mamba_bytes_per_sequence > 0) {
    std::cout << "Mamba state  " << Bytes(p.mamba_bytes_per_sequence) << " per sequence (f32, "
              << c.NumLayersOf(MixerKind::kMamba) << " Mamba layers)\n";
  }
  const int64_t per_seq = context * p.kv_bytes_per_token + p.mamba_bytes_per_sequence;
  std::cout << "one sequence at " << context << " tokens: " << Bytes(per_seq) << " of state";
  if (c.num_kv_heads > 0 && c.NumLayersOf(MixerKind::kMamba) > 0) {
    // The comparison the Jamba paper makes: the same model with attention in every layer.
    std::cout << " (all " << c.num_layers << " layers attention: "
              << Bytes(context * KvCachePool::TokenBytes(c.num_layers, c.num_kv_heads,
                                                         c.head_dim))
              << ")";
  }
  std::cout << "\n\nlayout: " << layout.layer_ranges.size() << " layer worker(s), "
            << layout.expert_specs.size() << " expert worker(s); state for " << sequences
            << " sequence(s) x " << context << " tokens\n";
  std::cout << absl::StrFormat("  %-10s %-20s %10s %10s %10s %10s %10s\n", "worker", "holds",
                               "weights", "KV/token", "Mamba/seq", "state", "total");
  int64_t sum = 0;
  int layer_index = 0, expert_index = 0;
  for (const WorkerSize& w : workers) {
    const std::string name = w.expert_worker ? absl::StrCat("expert ", expert_index++)
                                             : absl::StrCat("layer ", layer_index++);
    const std::string holds = w.expert_worker
                                  ? absl::StrCat(w.experts, " experts")
                                  : absl::StrCat("layers [", w.layer_begin, ", ", w.layer_end, ")");
    std::cout << absl::StrFormat("  %-10s %-20s %10s %10s %10s %10s %10s\n", name, holds,
                                 Bytes(w.weight_bytes),
                                 w.expert_worker ? "-" : Bytes(w.kv_bytes_per_token),
                                 w.expert_worker ? "-" : Bytes(w.mamba_bytes_per_sequence),
                                 Bytes(w.state_bytes), Bytes(w.total_bytes()));
    sum += w.total_bytes();
  }
  std::cout << "  cluster total " << Bytes(sum)
            << " (plus activations and workspace, which scale with the batch, not the "
               "context)\n";
}

nlohmann::json ReportJson(const MemoryPlan& p, const std::vector<WorkerSize>& workers,
                          int64_t sequences, int64_t context) {
  nlohmann::json ws = nlohmann::json::array();
  for (const WorkerSize& w : workers) {
    nlohmann::json j = {{"role", w.expert_worker ? "expert" : "layer"},
                        {"weight_bytes", w.weight_bytes},
                        {"state_bytes", w.state_bytes},
                        {"total_bytes", w.total_bytes()}};
    if (w.expert_worker) {
      j["experts"] = w.experts;
    } else {
      j["layer_begin"] = w.layer_begin;
      j["layer_end"] = w.layer_end;
      j["kv_bytes_per_token"] = w.kv_bytes_per_token;
      j["mamba_bytes_per_sequence"] = w.mamba_bytes_per_sequence;
    }
    ws.push_back(std::move(j));
  }
  return {{"parameters", p.parameters},
          {"active_parameters", p.active_parameters},
          {"weight_bytes", p.weight_bytes},
          {"expert_bytes", p.expert_bytes},
          {"globals_bytes", p.globals_bytes},
          {"kv_bytes_per_token", p.kv_bytes_per_token},
          {"mamba_bytes_per_sequence", p.mamba_bytes_per_sequence},
          {"sequences", sequences},
          {"context", context},
          {"workers", ws}};
}

}  // namespace

std::vector<WorkerSize> SizeWorkers(const ModelConfig& config, const MemoryPlan& plan,
                                    const ClusterPlan& layout, int64_t sequences,
                                    int64_t context) {
  std::vector<WorkerSize> out;
  const bool remote_experts = !layout.expert_layers.empty();
  for (size_t i = 0; i < layout.layer_ranges.size(); ++i) {
    const auto [begin, end] = layout.layer_ranges[i];
    WorkerSize w;
    w.layer_begin = begin;
    w.layer_end = end;
    w.weight_bytes = plan.LayerBytes(begin, end, /*with_experts=*/!remote_experts);
    if (i == 0) w.weight_bytes += plan.embedding_bytes;
    if (i + 1 == layout.layer_ranges.size()) w.weight_bytes += plan.head_bytes;
    if (!remote_experts) {
      for (int64_t l = begin; l < end; ++l) {
        if (config.layers[l].ffn == FfnKind::kMoe) w.experts += config.num_experts;
      }
    }
    w.kv_bytes_per_token = plan.KvBytesPerToken(begin, end);
    w.mamba_bytes_per_sequence = plan.MambaBytesPerSequence(begin, end);
    w.state_bytes = sequences * (context * w.kv_bytes_per_token + w.mamba_bytes_per_sequence);
    out.push_back(w);
  }
  for (const auto& held : layout.expert_layers) {
    WorkerSize w;
    w.expert_worker = true;
    for (const auto& [layer, experts] : held) {
      w.experts += static_cast<int64_t>(experts.size());
      // All experts of a layer have the same shapes.
      w.weight_bytes += plan.layers[layer].expert_bytes / config.num_experts *
                        static_cast<int64_t>(experts.size());
    }
    out.push_back(w);
  }
  return out;
}

int RunSizeCommand(int argc, char** argv) {
  std::string model, config_file, dtype = "bf16";
  int32_t layer_workers = 1, expert_workers = 0, replicas = 1;
  int64_t sequences = 1, context = 0;
  bool json = false, int8_experts = false;
  FlagParser flags(
      "jambactl size (--model DIR | --config FILE) [--weights bf16|f32] [--context T]\n"
      "              [--sequences S] [--layer-workers N] [--expert-workers M] [--replicas R]",
      "Memory needed to serve a model, from its config.json alone (no weights are read):\n"
      "parameters (total and active per token), weight bytes (experts, other layers,\n"
      "embedding and head), KV cache bytes per token, Mamba state bytes per sequence, and\n"
      "for a layout as `jambactl cluster up` or deploy/k8s would build it, what each layer\n"
      "and expert worker holds with S sequences of T tokens each.");
  flags.String("model", &model, "checkpoint folder (its config.json is read)", "", "DIR");
  flags.String("config", &config_file, "a config.json file", "", "FILE");
  flags.String("weights", &dtype, "dtype of the weight matrices", "", "bf16|f32");
  flags.Int("context", &context, "tokens per sequence; 0 = the model's context limit");
  flags.Int("sequences", &sequences, "concurrent sequences whose state is held");
  flags.Int32("layer-workers", &layer_workers, "pipeline stages");
  flags.Int32("expert-workers", &expert_workers, "expert workers; 0 = experts in layer workers");
  flags.Int32("replicas", &replicas, "expert workers holding each expert");
  flags.Bool("int8-experts", &int8_experts, "experts quantised to int8 (--int8-experts)");
  flags.Bool("json", &json, "print one JSON object");
  if (absl::optional<int> exit = flags.ParseMain(argc, argv, "jambactl size")) return *exit;
  auto usage = [](const std::string& message) {
    std::cerr << "jambactl size: " << message << "\n";
    return kExitUsage;
  };
  if (model.empty() == config_file.empty()) return usage("give exactly one of --model and --config");
  if (dtype != "bf16" && dtype != "f32") return usage("--weights must be bf16 or f32");
  if (sequences < 1) return usage("--sequences must be >= 1");
  if (context < 0) return usage("--context must be >= 0");

  absl::StatusOr<ModelConfig> config = [&]() -> absl::StatusOr<ModelConfig> {
    if (!model.empty()) return LoadModelConfig(model);
    std::ifstream in(config_file);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", config_file));
    std::stringstream text;
    text << in.rdbuf();
    return ParseModelConfig(text.str(), config_file);
  }();
  if (!config.ok()) {
    std::cerr << "jambactl size: " << config.status().message() << "\n";
    return 1;
  }
  if (context == 0) context = config->max_position_embeddings;
  if (context == 0) return usage("the model sets no context limit: give --context");
  absl::StatusOr<ClusterPlan> layout =
      PlanCluster(*config, layer_workers, expert_workers, replicas);
  if (!layout.ok()) return usage(std::string(layout.status().message()));
  absl::StatusOr<MemoryPlan> plan =
      PlanMemory(*config, dtype == "bf16" ? DType::kBF16 : DType::kF32, int8_experts);
  if (!plan.ok()) {
    std::cerr << "jambactl size: " << plan.status().message() << "\n";
    return 1;
  }
  const std::vector<WorkerSize> workers =
      SizeWorkers(*config, *plan, *layout, sequences, context);
  if (json) {
    std::cout << ReportJson(*plan, workers, sequences, context).dump(2) << "\n";
  } else {
    PrintReport(*config, *plan, *layout, workers, sequences, context,
                int8_experts ? dtype + " (experts int8)" : dtype);
  }
  return 0;
}

}  // namespace jamba
