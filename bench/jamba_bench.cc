// jamba-bench: throughput of the engine on a checkpoint or on random weights built from any
// config.json, with the memory roofline of batch-1 decode measured in the same run.
// See README.md ("Performance") for the figures and the command.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/bench_config.h"
#include "bench/engine_timing.h"
#include "bench/memory_bandwidth.h"
#include "cli/flag_parser.h"
#include "common/status_macros.h"
#include "engine/checkpoint/checkpoint.h"
#include "engine/config/model_config.h"
#include "engine/runtime/engine.h"
#include "kernels/cpu/cpu_ops.h"
#include "nlohmann/json.hpp"

namespace jamba {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct Options {
  BenchModelFlags source;
  std::string batches = "1,4,16";
  int32_t prompt_len = 64;
  int32_t decode_steps = 16;
  int32_t threads = 0;
  bool gemm = false;
  bool compare_blas = false;
  int64_t bandwidth_mib = 1024;
};

absl::StatusOr<std::unique_ptr<Model>> LoadModel(const Options& o, DType dtype, Backend* backend) {
  LoadOptions load;
  load.weight_dtype = dtype;
  const BenchModelFlags& m = o.source;
  if (!m.model.empty()) return Model::Load(m.model, load, backend);
  JAMBA_ASSIGN_OR_RETURN(std::string text, ConfigWithOverrides(m.config, m.overrides));
  JAMBA_ASSIGN_OR_RETURN(ModelConfig config, ParseModelConfig(text, m.config));
  return Model::Load(Checkpoint::Synthetic(std::move(config), /*seed=*/1234), load, backend);
}

// GFLOP/s of y[n, m] = x[n, k] w[m, k]^T for the dot kernel and OpenBLAS.
void GemmComparison(Backend* backend, int64_t m, int64_t k, DType dtype) {
  std::printf("\nGEMM %lld x %lld, %s weights (GFLOP/s, best of 5)\n", static_cast<long long>(m),
              static_cast<long long>(k), DTypeName(dtype));
  std::printf("  %6s %12s %12s %8s\n", "rows", "dot kernel", "OpenBLAS", "ratio");
  auto w = backend->Allocate(dtype, {m, k});
  if (!w.ok()) return;
  std::vector<uint16_t> w_bf16(m * k, 0x3c00);  // bf16 0.0078125
  std::vector<float> ones(m * k, 0.01f);
  if (dtype == DType::kBF16) {
    backend->Upload(w_bf16.data(), w_bf16.size() * 2, (*w)->tensor()).IgnoreError();
  } else {
    backend->Upload(ones.data(), ones.size() * 4, (*w)->tensor()).IgnoreError();
  }
  for (int64_t n : {1, 4, 16, 64, 256}) {
    auto x = backend->Allocate(DType::kF32, {n, k});
    auto y = backend->Allocate(DType::kF32, {n, m});
    if (!x.ok() || !y.ok()) return;
    std::vector<float> xs(n * k, 0.5f);
    backend->Upload(xs.data(), xs.size() * 4, (*x)->tensor()).IgnoreError();
    double best[2] = {0, 0};
    for (int path = 0; path < 2; ++path) {
      for (int rep = 0; rep < 5; ++rep) {
        const auto t0 = Clock::now();
        if (path == 0) {
          cpu::MatMulSkinny((*x)->tensor(), (*w)->tensor(), nullptr, (*y)->tensor());
        } else {
          cpu::MatMulBlas((*x)->tensor(), (*w)->tensor(), nullptr, (*y)->tensor());
        }
        best[path] = std::max(best[path], 2.0 * n * m * k / Since(t0) / 1e9);
      }
    }
    std::printf("  %6lld %12.1f %12.1f %8.2f\n", static_cast<long long>(n), best[0], best[1],
                best[0] / best[1]);
  }
}

int Fail(const absl::Status& s) {
  std::cerr << "jamba-bench: " << s.message() << "\n";
  return 1;
}

int Run(int argc, char** argv) {
  Options o;
  FlagParser flags(
      "jamba-bench (--model DIR | --config config.json [--set KEY=VALUE ...]) [options]",
      "Measures prefill and decode throughput of the CPU engine at several batch sizes, the\n"
      "state each sequence holds, the machine's memory read bandwidth, and batch-1 decode\n"
      "against its memory roofline (the weights one decode step must read / bandwidth).\n"
      "With --config the weights are random (no download needed): --set overrides fields,\n"
      "e.g. --set num_hidden_layers=8 --set hidden_size=1024 scales Jamba-v0.1 down.");
  AddBenchModelFlags(flags, &o.source);
  flags.String("batches", &o.batches, "batch sizes to run", "Run", "N,N,...");
  flags.Int32("prompt-len", &o.prompt_len, "prompt tokens per sequence", "Run");
  flags.Int32("decode-steps", &o.decode_steps, "timed decode steps per batch size", "Run");
  flags.Int32("threads", &o.threads, "CPU threads; 0 = all cores", "Run");
  flags.Int("bandwidth-mib", &o.bandwidth_mib, "buffer size of the bandwidth measurement", "Run");
  flags.Bool("compare-blas", &o.compare_blas,
             "also run with OpenBLAS for large products (not batch-invariant)", "Run");
  flags.Bool("gemm", &o.gemm,
             "compare the dot kernel and OpenBLAS on the model's largest "
             "projection",
             "Run");
  if (absl::optional<int> exit = flags.ParseMain(argc, argv, "jamba-bench")) return *exit;
  if (o.source.model.empty() == o.source.config.empty()) {
    std::cerr << "jamba-bench: give exactly one of --model and --config (see --help)\n";
    return 2;
  }
  if (o.source.weights != "f32" && o.source.weights != "bf16") {
    std::cerr << "jamba-bench: --weights must be f32 or bf16\n";
    return 2;
  }
  absl::StatusOr<std::vector<int>> parsed = ParseBatchSizes(o.batches, 1024);
  if (!parsed.ok()) {
    std::cerr << "jamba-bench: " << parsed.status().message() << "\n";
    return 2;
  }
  const std::vector<int>& batches = *parsed;
  if (o.prompt_len < 1 || o.decode_steps < 1 || o.threads < 0 || o.bandwidth_mib < 16) {
    std::cerr << "jamba-bench: --prompt-len, --decode-steps must be >= 1, --bandwidth-mib >= 16\n";
    return 2;
  }
  if (o.threads > 0) omp_set_num_threads(o.threads);
  const DType dtype = o.source.weights == "bf16" ? DType::kBF16 : DType::kF32;
  const int max_batch = *std::max_element(batches.begin(), batches.end());

  std::vector<bool> modes = {true};
  if (o.compare_blas) modes.push_back(false);
  std::mt19937 rng(7);
  std::vector<std::vector<Throughput>> results(modes.size());
  EngineStats stats;
  int64_t params = 0;
  ModelConfig config;
  for (size_t mi = 0; mi < modes.size(); ++mi) {
    CpuBackendOptions bo;
    bo.batch_invariant = modes[mi];
    std::unique_ptr<Backend> backend = CreateCpuBackend(bo);
    auto model = LoadModel(o, dtype, backend.get());
    if (!model.ok()) return Fail(model.status());
    params = (*model)->num_parameters();
    EngineOptions eo;
    eo.weight_dtype = dtype;
    eo.max_sequences = max_batch;
    // Every sequence: prompt + warm-up + timed decode tokens, rounded up to whole blocks.
    eo.kv_cache_tokens =
        int64_t{max_batch} * (o.prompt_len + o.decode_steps + 2 + eo.kv_block_size);
    auto engine = Engine::Create(*std::move(model), eo, backend.get());
    if (!engine.ok()) return Fail(engine.status());
    config = (*engine)->config();
    stats = (*engine)->Stats();
    for (int b : batches) {
      auto r = TimeEngineBatch(engine->get(), b, o.prompt_len, o.decode_steps, &rng);
      if (!r.ok()) return Fail(r.status());
      results[mi].push_back(*r);
    }
    if (o.gemm && mi == 0) {
      const int64_t m =
          config.mamba_d_inner > 0 ? 2 * config.mamba_d_inner : 3 * config.intermediate_size;
      GemmComparison(backend.get(), m, config.hidden_size, dtype);
    }
  }

  const double bandwidth = MeasureReadBandwidth(o.bandwidth_mib << 20, 5);
  // Bytes one batch-1 decode step must read: every weight except the embedding table (one row)
  // when it is not also the LM head, and only k of the E experts of each MoE layer; plus the
  // sequence's state: Mamba conv + SSM read and written, KV of the context read.
  const int64_t wsize = DTypeSize(dtype);
  int64_t active = params;
  if (!config.tie_word_embeddings) active -= config.vocab_size * config.hidden_size;
  const int64_t expert_params = 3 * config.hidden_size * config.intermediate_size;
  active -=
      config.NumMoeLayers() * (config.num_experts - config.num_experts_per_tok) * expert_params;
  const int64_t weight_read = stats.weight_bytes - (params - active) * wsize;
  const int64_t context = o.prompt_len + o.decode_steps / 2;
  const int64_t state_rw = 2 * stats.mamba_bytes_per_sequence + context * stats.kv_bytes_per_token;
  const double roofline_tok_s = bandwidth / static_cast<double>(weight_read + state_rw);

  std::printf("\nmodel: %s  arch %s  layers %lld (attention %lld, Mamba %lld, MoE %lld)\n",
              o.source.model.empty() ? (o.source.config + " (random weights)").c_str()
                                     : o.source.model.c_str(),
              ArchitectureName(config.arch), static_cast<long long>(config.num_layers),
              static_cast<long long>(config.NumLayersOf(MixerKind::kAttention)),
              static_cast<long long>(config.NumLayersOf(MixerKind::kMamba)),
              static_cast<long long>(config.NumMoeLayers()));
  std::printf("parameters: %.1f M total, %.1f M active per token; weights %s, %.1f MiB held\n",
              params / 1e6, active / 1e6, o.source.weights.c_str(), stats.weight_bytes / 1048576.0);
  std::printf("threads: %d   memory read bandwidth: %.2f GB/s\n", omp_get_max_threads(),
              bandwidth / 1e9);
  std::printf(
      "state per sequence: KV %lld B/token (all attention layers), Mamba %lld B "
      "(conv + SSM, all Mamba layers)\n",
      static_cast<long long>(stats.kv_bytes_per_token),
      static_cast<long long>(stats.mamba_bytes_per_sequence));
  std::printf("batch-1 decode reads %.1f MiB per step (weights %.1f MiB + state %.2f MiB)\n\n",
              (weight_read + state_rw) / 1048576.0, weight_read / 1048576.0, state_rw / 1048576.0);
  for (size_t mi = 0; mi < modes.size(); ++mi) {
    std::printf("%s (prompt %d tokens, %d decode steps)\n",
                modes[mi] ? "batch-invariant kernels (default)" : "OpenBLAS for large products",
                o.prompt_len, o.decode_steps);
    std::printf("  %6s %16s %16s %16s\n", "batch", "prefill tok/s", "decode tok/s",
                "decode ms/step");
    for (size_t bi = 0; bi < batches.size(); ++bi) {
      const Throughput& r = results[mi][bi];
      std::printf("  %6d %16.1f %16.1f %16.2f\n", batches[bi], r.prefill_tok_s, r.decode_tok_s,
                  r.decode_step_ms);
    }
    for (size_t bi = 0; bi < batches.size(); ++bi) {
      if (batches[bi] != 1) continue;
      std::printf("  batch-1 decode: %.1f tok/s of a %.1f tok/s roofline = %.0f%%\n",
                  results[mi][bi].decode_tok_s, roofline_tok_s,
                  100.0 * results[mi][bi].decode_tok_s / roofline_tok_s);
    }
  }
  if (modes.size() == 2) {
    std::printf("\nprefill throughput, batch-invariant / OpenBLAS:");
    for (size_t bi = 0; bi < batches.size(); ++bi) {
      std::printf("  batch %d: %.2f", batches[bi],
                  results[0][bi].prefill_tok_s / results[1][bi].prefill_tok_s);
    }
    std::printf("\n");
  }
  return 0;
}

}  // namespace
}  // namespace jamba

int main(int argc, char** argv) { return jamba::Run(argc, argv); }
