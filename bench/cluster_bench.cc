// jamba-cluster-bench: decode throughput and per-step latency of a local cluster (real
// processes on loopback: expert workers, layer workers, gateway, driven through the public
// gRPC API by concurrent streams) against the single-process engine on the same checkpoint
// and batch sizes, measured in one run, with the ratio.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/bench_config.h"
#include "bench/engine_timing.h"
#include "cli/cluster_plan.h"
#include "cli/flag_parser.h"
#include "cli/local_cluster.h"
#include "client/client.h"
#include "common/status_macros.h"
#include "engine/checkpoint/checkpoint.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/config/model_config.h"
#include "engine/runtime/engine.h"

namespace jamba {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

struct Options {
  BenchModelFlags source;
  std::string work_dir = "/tmp/jamba-cluster-bench";
  std::string batches = "1,4,16";
  int32_t prompt_len = 16, decode_steps = 32, threads = 0;
  int32_t layer_workers = 2, expert_workers = 2, replicas = 1;
};

struct Result {
  double tok_s = 0, step_ms = 0;
};

// Writes the synthetic checkpoint of `config_text` (random bf16 weights, engine/checkpoint/
// synthetic_weights.h) to `dir` as config.json + model.safetensors, so separate processes can
// load it.
absl::Status MaterializeSynthetic(const std::string& config_text, const std::string& dir) {
  JAMBA_ASSIGN_OR_RETURN(ModelConfig config, ParseModelConfig(config_text, "config.json"));
  std::unique_ptr<Backend> backend = CreateCpuBackend();
  LoadOptions load;
  load.weight_dtype = DType::kBF16;
  JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                         Model::Load(Checkpoint::Synthetic(config, 1234), load, backend.get()));
  Checkpoint* ckpt = model->mutable_checkpoint();
  std::map<std::string, SafetensorsWriteTensor> tensors;
  for (const std::string& name : ckpt->TensorNames()) {
    JAMBA_ASSIGN_OR_RETURN(const SafetensorsTensor* t, ckpt->Get(name));
    tensors[name] = SafetensorsWriteTensor{
        t->dtype, t->shape, std::string(reinterpret_cast<const char*>(t->data), t->nbytes)};
  }
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << config_text;
  return WriteSafetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}});
}

// `batch` concurrent greedy streams through the gateway. The decode window runs from the
// moment every stream has its third token (prefill and warm-up done) to the moment the first
// stream ends; tokens arriving inside it count.
absl::StatusOr<Result> Cluster(const std::string& gateway, int batch, int64_t vocab,
                               const Options& o, std::mt19937* rng) {
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(vocab) - 1);
  std::vector<std::vector<Clock::time_point>> arrivals(batch);
  std::vector<absl::Status> errors(batch);
  std::vector<v1::GenerateRequest> requests(batch);
  for (int b = 0; b < batch; ++b) {
    for (int t = 0; t < o.prompt_len; ++t) requests[b].mutable_token_ids()->add_ids(token(*rng));
    v1::SamplingParams* s = requests[b].mutable_sampling();
    s->set_temperature(0);
    s->set_ignore_eos(true);
    s->set_max_new_tokens(o.decode_steps + 3);
  }
  JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<client::Client> c, client::Client::Connect(gateway));
  std::vector<std::thread> threads;
  for (int b = 0; b < batch; ++b) {
    threads.emplace_back([&, b] {
      std::unique_ptr<client::GenerateStream> stream = c->Generate(requests[b]);
      while (true) {
        absl::StatusOr<std::optional<v1::GenerateChunk>> chunk = stream->Next();
        if (!chunk.ok()) {
          errors[b] = chunk.status();
          return;
        }
        if (!chunk->has_value()) return;
        const auto now = Clock::now();
        for (int i = 0; i < (*chunk)->token_ids_size(); ++i) arrivals[b].push_back(now);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  Clock::time_point start = Clock::time_point::min(), end = Clock::time_point::max();
  for (int b = 0; b < batch; ++b) {
    JAMBA_RETURN_IF_ERROR(errors[b]);
    if (static_cast<int>(arrivals[b].size()) != o.decode_steps + 3) {
      return absl::InternalError(absl::StrCat("stream ", b, " got ", arrivals[b].size(),
                                              " tokens, expected ", o.decode_steps + 3));
    }
    start = std::max(start, arrivals[b][2]);
    end = std::min(end, arrivals[b].back());
  }
  int64_t tokens = 0;
  for (const auto& a : arrivals) {
    for (const auto& t : a) tokens += t > start && t <= end;
  }
  const double secs = Seconds(start, end);
  if (tokens == 0 || secs <= 0) return absl::InternalError("empty decode window");
  return Result{tokens / secs, 1e3 * secs / (static_cast<double>(tokens) / batch)};
}

int Fail(const absl::Status& s) {
  std::cerr << "jamba-cluster-bench: " << s.message() << "\n";
  return 1;
}

int Run(int argc, char** argv) {
  Options o;
  FlagParser flags(
      "jamba-cluster-bench (--model DIR | --config config.json [--set KEY=VALUE ...]) [options]",
      "Decode throughput and per-step latency of a local cluster (expert workers, layer\n"
      "workers and the gateway as separate processes on loopback, driven by concurrent gRPC\n"
      "streams) against the single-process engine on the same checkpoint, with the ratio.\n"
      "With --config, random bf16 weights are written to --work-dir first.");
  AddBenchModelFlags(flags, &o.source);
  flags.String("work-dir", &o.work_dir, "where --config's checkpoint is written", "Model", "DIR");
  flags.String("batches", &o.batches, "batch sizes (concurrent streams)", "Run", "N,N,...");
  flags.Int32("prompt-len", &o.prompt_len, "prompt tokens per sequence", "Run");
  flags.Int32("decode-steps", &o.decode_steps, "timed decode steps", "Run");
  flags.Int32("threads", &o.threads, "CPU threads per process; 0 = all cores", "Run");
  flags.Int32("layer-workers", &o.layer_workers, "pipeline stages", "Cluster");
  flags.Int32("expert-workers", &o.expert_workers, "expert worker processes", "Cluster");
  flags.Int32("replicas", &o.replicas, "expert workers holding each expert", "Cluster");
  if (absl::optional<int> exit = flags.ParseMain(argc, argv, "jamba-cluster-bench")) {
    return *exit;
  }
  if (o.source.model.empty() == o.source.config.empty() ||
      (o.source.weights != "f32" && o.source.weights != "bf16") || o.prompt_len < 1 ||
      o.decode_steps < 1 || o.threads < 0) {
    std::cerr << "jamba-cluster-bench: give exactly one of --model and --config; --weights "
                 "f32|bf16; --prompt-len, --decode-steps >= 1 (see --help)\n";
    return 2;
  }
  absl::StatusOr<std::vector<int>> parsed = ParseBatchSizes(o.batches, 256);
  if (!parsed.ok()) {
    std::cerr << "jamba-cluster-bench: " << parsed.status().message() << "\n";
    return 2;
  }
  const std::vector<int>& batches = *parsed;
  const int max_batch = *std::max_element(batches.begin(), batches.end());
  if (o.threads > 0) omp_set_num_threads(o.threads);
  std::string dir = o.source.model;
  if (dir.empty()) {
    auto text = ConfigWithOverrides(o.source.config, o.source.overrides);
    if (!text.ok()) return Fail(text.status());
    dir = o.work_dir;
    std::cerr << "writing random weights to " << dir << "\n";
    if (absl::Status s = MaterializeSynthetic(*text, dir); !s.ok()) return Fail(s);
  }
  auto config = LoadModelConfig(dir);
  if (!config.ok()) return Fail(config.status());
  std::mt19937 rng(7);

  // ---- Single process. ------------------------------------------------------------------
  std::vector<Result> single;
  {
    std::unique_ptr<Backend> backend = CreateCpuBackend();
    EngineOptions eo;
    eo.weight_dtype = o.source.weights == "bf16" ? DType::kBF16 : DType::kF32;
    eo.max_sequences = max_batch;
    eo.kv_cache_tokens = int64_t{max_batch} * (o.prompt_len + o.decode_steps + 8 + 16);
    auto engine = Engine::Create(dir, eo, backend.get());
    if (!engine.ok()) return Fail(engine.status());
    for (int b : batches) {
      auto r = TimeEngineBatch(engine->get(), b, o.prompt_len, o.decode_steps, &rng);
      if (!r.ok()) return Fail(r.status());
      single.push_back(Result{r->decode_tok_s, r->decode_step_ms});
    }
  }

  // ---- Cluster. -------------------------------------------------------------------------
  auto plan = PlanCluster(*config, o.layer_workers, o.expert_workers, o.replicas);
  if (!plan.ok()) return Fail(plan.status());
  LocalClusterOptions lo;
  lo.model = dir;
  lo.plan = *plan;
  lo.weights = o.source.weights;
  lo.threads = o.threads;
  lo.max_running = max_batch;
  lo.max_sequences = max_batch;
  auto cluster = LocalCluster::Start(lo);
  if (!cluster.ok()) return Fail(cluster.status());
  std::vector<Result> clustered;
  for (int b : batches) {
    auto r = Cluster((*cluster)->gateway(), b, config->vocab_size, o, &rng);
    if (!r.ok()) return Fail(r.status());
    clustered.push_back(*r);
  }
  (*cluster)->Stop(absl::Seconds(10));

  std::printf(
      "\nmodel %s: %lld layers, hidden %lld, %lld experts; %s weights; %d threads/process\n",
      dir.c_str(), static_cast<long long>(config->num_layers),
      static_cast<long long>(config->hidden_size), static_cast<long long>(config->num_experts),
      o.source.weights.c_str(), o.threads);
  std::printf("cluster: %d layer workers, %d expert workers (replicas %d), gateway; loopback\n",
              o.layer_workers, o.expert_workers, o.replicas);
  std::printf("decode, %d prompt tokens, %d timed steps\n", o.prompt_len, o.decode_steps);
  std::printf("  %5s %14s %12s %14s %12s %8s\n", "batch", "single tok/s", "single ms",
              "cluster tok/s", "cluster ms", "ratio");
  for (size_t i = 0; i < batches.size(); ++i) {
    std::printf("  %5d %14.1f %12.2f %14.1f %12.2f %7.0f%%\n", batches[i], single[i].tok_s,
                single[i].step_ms, clustered[i].tok_s, clustered[i].step_ms,
                100.0 * clustered[i].tok_s / single[i].tok_s);
  }
  return 0;
}

}  // namespace
}  // namespace jamba

int main(int argc, char** argv) { return jamba::Run(argc, argv); }
