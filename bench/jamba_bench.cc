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
#include "kernels/backend_factory.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu_threads.h"
#ifdef JAMBA_HAS_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif
#include "nlohmann/json.hpp"

namespace jamba {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct Options {
  BenchModelFlags source;
  std::string device = "cpu";
  std::string matmul_precision = "f32";
  MatMulPrecision precision = MatMulPrecision::kF32;  // parsed from matmul_precision
  std::string batches = "1,4,16";
  int32_t prompt_len = 64;
  int32_t decode_steps = 16;
  int32_t threads = 0;
  bool gemm = false;
  bool compare_blas = false;
  bool gemv = false;
  int64_t bandwidth_mib = 1024;
  std::string prefill_lens;  // "1024,8192,32768": one-sequence prefill tokens/s at each
  std::string contexts;      // decode tokens/s at each context length
  int32_t context_batch = 1;
  bool all_attention = false;  // the context sweep also for every layer as attention
  int64_t prefill_chunk = 4096;
};

// Bytes per second the device's memory sustains: a read stream on the CPU, a device-to-device
// copy (read + write) on a GPU.
absl::StatusOr<double> MeasureBandwidth(const std::string& device, int64_t bytes) {
  if (device == "cpu") return MeasureReadBandwidth(bytes, 5);
#ifdef JAMBA_HAS_CUDA
  JAMBA_ASSIGN_OR_RETURN(const int index, ParseDeviceName(device));
  return CudaCopyBandwidth(index, bytes, 5);
#else
  return absl::UnavailableError("no CUDA in this build");
#endif
}

// `extra` overrides apply after --set (random weights only).
absl::StatusOr<std::unique_ptr<Model>> LoadModel(const Options& o, DType dtype, Backend* backend,
                                                 const std::vector<std::string>& extra = {}) {
  LoadOptions load;
  load.weight_dtype = dtype;
  load.int8_experts = o.source.int8_experts;
  const BenchModelFlags& m = o.source;
  if (!m.model.empty()) return Model::Load(m.model, load, backend);
  std::vector<std::string> overrides = m.overrides;
  overrides.insert(overrides.end(), extra.begin(), extra.end());
  JAMBA_ASSIGN_OR_RETURN(std::string text, ConfigWithOverrides(m.config, overrides));
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

// Decode-shaped products y[n, m] = x[n, k] w[m, k]^T on the run's device: the backend's
// MatMul (cuBLAS on a GPU; MatMulInt8 for int8 weights) against MatMulGrouped with one group
// (the GEMV kernel the MoE decode path uses), in GB/s of weights read: best of 5 timings of
// 20 products each, synchronised around each timing.
absl::Status GemvComparison(Backend* backend, int64_t m, int64_t k, DType dtype) {
  std::printf("\ndecode products %lld x %lld, %s weights (weight GB/s, best of 5 x 20)\n",
              static_cast<long long>(m), static_cast<long long>(k), DTypeName(dtype));
  std::printf("  %6s %14s %14s %8s\n", "rows", "MatMul", "MatMulGrouped", "ratio");
  JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<DeviceBuffer> w, backend->Allocate(dtype, {m, k}));
  JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<DeviceBuffer> scale, backend->Allocate(DType::kF32, {m}));
  {
    // Small nonzero weights (the timing does not depend on them, but an all-zero matrix could
    // take shortcuts in a library).
    std::vector<uint8_t> bytes(static_cast<size_t>(m * k) * DTypeSize(dtype));
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(0x31 + i % 7);
    JAMBA_RETURN_IF_ERROR(backend->Upload(bytes.data(), bytes.size(), w->tensor()));
    std::vector<float> scales(m, 0.01f);
    JAMBA_RETURN_IF_ERROR(backend->Upload(scales.data(), m * sizeof(float), scale->tensor()));
  }
  const std::vector<Tensor> group = {w->tensor()};
  const std::vector<Tensor> group_scale =
      dtype == DType::kI8 ? std::vector<Tensor>{scale->tensor()} : std::vector<Tensor>{};
  const double weight_bytes = static_cast<double>(m * k) * DTypeSize(dtype);
  for (int64_t n : {1, 2, 4, 8}) {
    JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<DeviceBuffer> x, backend->Allocate(DType::kF32, {n, k}));
    JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<DeviceBuffer> y, backend->Allocate(DType::kF32, {n, m}));
    JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<DeviceBuffer> counts,
                           backend->Allocate(DType::kI32, {1}));
    const std::vector<float> xs(n * k, 0.5f);
    const int32_t count = static_cast<int32_t>(n);
    JAMBA_RETURN_IF_ERROR(backend->Upload(xs.data(), xs.size() * 4, x->tensor()));
    JAMBA_RETURN_IF_ERROR(backend->Upload(&count, sizeof(count), counts->tensor()));
    double best[2] = {0, 0};
    for (int path = 0; path < 2; ++path) {
      for (int rep = 0; rep < 5; ++rep) {
        JAMBA_RETURN_IF_ERROR(backend->Synchronize());
        const auto t0 = Clock::now();
        for (int i = 0; i < 20; ++i) {
          if (path == 1) {
            backend->MatMulGrouped(x->tensor(), group, group_scale, counts->tensor(), y->tensor());
          } else if (dtype == DType::kI8) {
            backend->MatMulInt8(x->tensor(), w->tensor(), scale->tensor(), nullptr, y->tensor());
          } else {
            backend->MatMul(x->tensor(), w->tensor(), nullptr, y->tensor());
          }
        }
        JAMBA_RETURN_IF_ERROR(backend->Synchronize());
        best[path] = std::max(best[path], 20 * weight_bytes / Since(t0) / 1e9);
      }
    }
    std::printf("  %6lld %14.1f %14.1f %8.2f\n", static_cast<long long>(n), best[0], best[1],
                best[1] / best[0]);
  }
  return absl::OkStatus();
}

// An engine for the long-context runs: `sequences` sequences of up to `context` tokens, the
// model built with `extra` config overrides.
absl::StatusOr<std::unique_ptr<Engine>> LongContextEngine(const Options& o, DType dtype,
                                                          Backend* backend, int sequences,
                                                          int64_t context,
                                                          const std::vector<std::string>& extra) {
  JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, LoadModel(o, dtype, backend, extra));
  EngineOptions eo;
  eo.weight_dtype = dtype;
  eo.max_sequences = sequences;
  eo.max_context = context + 64;
  eo.kv_cache_tokens = int64_t{sequences} * (context + 64 + eo.kv_block_size);
  return Engine::Create(std::move(model), eo, backend);
}

// Prefill tokens/s at each length, and decode tokens/s at each context length (with
// --all-attention, also for the same model with attention in every layer).
absl::Status LongContextRuns(const Options& o, DType dtype, const std::vector<int64_t>& lens,
                             const std::vector<int64_t>& contexts) {
  std::mt19937 rng(11);
  JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend,
                         CreateBackend(o.device, BackendOptions{.matmul_precision = o.precision}));
  if (!lens.empty()) {
    const int64_t longest = *std::max_element(lens.begin(), lens.end());
    JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine,
                           LongContextEngine(o, dtype, backend.get(), 1, longest, {}));
    std::printf("\nprefill of one sequence (%lld tokens per step)\n  %10s %16s\n",
                static_cast<long long>(o.prefill_chunk), "tokens", "prefill tok/s");
    for (int64_t len : lens) {
      JAMBA_ASSIGN_OR_RETURN(double tok_s, TimePrefill(engine.get(), len, o.prefill_chunk, &rng));
      std::printf("  %10lld %16.1f\n", static_cast<long long>(len), tok_s);
    }
  }
  if (contexts.empty()) return absl::OkStatus();
  const int64_t longest = *std::max_element(contexts.begin(), contexts.end());
  std::vector<std::vector<std::string>> variants = {{}};
  if (o.all_attention) variants.push_back({"attn_layer_period=1", "attn_layer_offset=0"});
  std::vector<std::vector<double>> tok_s(variants.size());
  for (size_t v = 0; v < variants.size(); ++v) {
    JAMBA_ASSIGN_OR_RETURN(
        std::unique_ptr<Engine> engine,
        LongContextEngine(o, dtype, backend.get(), o.context_batch, longest, variants[v]));
    for (int64_t c : contexts) {
      JAMBA_ASSIGN_OR_RETURN(double t, TimeDecodeAtContext(engine.get(), o.context_batch, c,
                                                           o.decode_steps, o.prefill_chunk, &rng));
      tok_s[v].push_back(t);
    }
  }
  std::printf("\ndecode at batch %d against context length (tokens/s)\n  %10s %14s",
              o.context_batch, "context", "this schedule");
  if (o.all_attention) std::printf(" %14s %8s", "all-attention", "ratio");
  std::printf("\n");
  for (size_t i = 0; i < contexts.size(); ++i) {
    std::printf("  %10lld %14.1f", static_cast<long long>(contexts[i]), tok_s[0][i]);
    if (o.all_attention) std::printf(" %14.1f %8.2f", tok_s[1][i], tok_s[0][i] / tok_s[1][i]);
    std::printf("\n");
  }
  return absl::OkStatus();
}

int Fail(const absl::Status& s) {
  std::cerr << "jamba-bench: " << s.message() << "\n";
  return 1;
}

int Run(int argc, char** argv) {
  Options o;
  FlagParser flags(
      "jamba-bench (--model DIR | --config config.json [--set KEY=VALUE ...]) [options]",
      "Measures prefill and decode throughput of the engine (CPU or GPU) at several batch\n"
      "sizes, the state each sequence holds, the device's memory bandwidth, and batch-1\n"
      "decode against its memory roofline (bytes one decode step must read / bandwidth);\n"
      "optionally long prefills and decode against context length (--prefill-lens,\n"
      "--contexts, --all-attention).\n"
      "With --config the weights are random (no download needed): --set overrides fields,\n"
      "e.g. --set num_hidden_layers=8 --set hidden_size=1024 scales Jamba-v0.1 down.");
  AddBenchModelFlags(flags, &o.source);
  flags.String("batches", &o.batches, "batch sizes to run", "Run", "N,N,...");
  flags.Int32("prompt-len", &o.prompt_len, "prompt tokens per sequence", "Run");
  flags.Int32("decode-steps", &o.decode_steps, "timed decode steps per batch size", "Run");
  flags.String("device", &o.device, kDeviceFlagHelp, "Run", "cpu|cuda[:N]");
  flags.String("backend", &o.device, "the same as --device", "Run", "cpu|cuda[:N]");
  flags.String("matmul-precision", &o.matmul_precision, kMatMulPrecisionFlagHelp, "Run",
               "f32|bf16");
  flags.Int32("threads", &o.threads, "CPU threads; 0 = all cores", "Run");
  flags.Int("bandwidth-mib", &o.bandwidth_mib, "buffer size of the bandwidth measurement", "Run");
  flags.Bool("compare-blas", &o.compare_blas,
             "also run with OpenBLAS for large products (not batch-invariant)", "Run");
  flags.Bool("gemm", &o.gemm,
             "compare the dot kernel and OpenBLAS on the model's largest "
             "projection",
             "Run");
  flags.Bool("gemv", &o.gemv,
             "compare MatMul (cuBLAS on a GPU) with the grouped GEMV kernel of the MoE decode "
             "path on the expert projection's shape, 1 to 8 rows",
             "Run");
  flags.String("prefill-lens", &o.prefill_lens,
               "also time a one-sequence prefill of each length (e.g. 1024,8192,32768)",
               "Long contexts", "N,N,...");
  flags.String("contexts", &o.contexts,
               "also time decode at each context length (e.g. 1024,4096,16384,65536)",
               "Long contexts", "N,N,...");
  flags.Int32("context-batch", &o.context_batch, "sequences decoding at once in --contexts",
              "Long contexts");
  flags.Bool("all-attention", &o.all_attention,
             "run --contexts also with every layer as attention (a Jamba config with "
             "attn_layer_period=1, attn_layer_offset=0: the Jamba paper's comparison)",
             "Long contexts");
  flags.Int("prefill-chunk", &o.prefill_chunk, "prompt tokens per step in the long-context runs",
            "Long contexts");
  if (absl::optional<int> exit = flags.ParseMain(argc, argv, "jamba-bench")) return *exit;
  if (absl::Status s = CheckDeviceName(o.device); !s.ok()) {
    std::cerr << "jamba-bench: --device: " << s.message() << "\n";
    return 2;
  }
  if (absl::StatusOr<MatMulPrecision> p = ParseMatMulPrecision(o.matmul_precision); p.ok()) {
    o.precision = *p;
  } else {
    std::cerr << "jamba-bench: --matmul-precision: " << p.status().message() << "\n";
    return 2;
  }
  const bool on_cpu = o.device == "cpu";
  if (!on_cpu && (o.compare_blas || o.gemm)) {
    std::cerr << "jamba-bench: --compare-blas and --gemm compare CPU kernels: use --device cpu\n";
    return 2;
  }
  absl::StatusOr<std::vector<int64_t>> prefill_lens =
      ParseIntList(o.prefill_lens, "prefill-lens", int64_t{1} << 22);
  absl::StatusOr<std::vector<int64_t>> contexts =
      ParseIntList(o.contexts, "contexts", int64_t{1} << 22);
  for (const absl::Status& s : {prefill_lens.status(), contexts.status()}) {
    if (!s.ok()) {
      std::cerr << "jamba-bench: " << s.message() << "\n";
      return 2;
    }
  }
  if (o.context_batch < 1 || o.prefill_chunk < 1 || (o.all_attention && o.contexts.empty())) {
    std::cerr << "jamba-bench: --context-batch and --prefill-chunk must be >= 1; "
                 "--all-attention needs --contexts\n";
    return 2;
  }
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
  SetCpuThreads(o.threads);
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
    BackendOptions bo;
    bo.matmul_precision = o.precision;
    bo.batch_invariant = modes[mi];
    absl::StatusOr<std::unique_ptr<Backend>> created = CreateBackend(o.device, bo);
    if (!created.ok()) return Fail(created.status());
    std::unique_ptr<Backend> backend = *std::move(created);
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
    if (o.gemv && mi == 0) {
      const int64_t inter =
          config.intermediate_size > 0 ? config.intermediate_size : config.hidden_size;
      const DType gemv_dtype =
          o.source.int8_experts && config.NumMoeLayers() > 0 ? DType::kI8 : dtype;
      if (absl::Status s = GemvComparison(backend.get(), inter, config.hidden_size, gemv_dtype);
          !s.ok()) {
        return Fail(s);
      }
    }
    if (o.gemm && mi == 0) {
      const int64_t m =
          config.mamba_d_inner > 0 ? 2 * config.mamba_d_inner : 3 * config.intermediate_size;
      GemmComparison(backend.get(), m, config.hidden_size, dtype);
    }
  }

  absl::StatusOr<double> measured = MeasureBandwidth(o.device, o.bandwidth_mib << 20);
  if (!measured.ok()) return Fail(measured.status());
  const double bandwidth = *measured;
  // Bytes one batch-1 decode step must read: every weight except the embedding table (one row)
  // when it is not also the LM head, and only k of the E experts of each MoE layer; plus the
  // sequence's state: Mamba conv + SSM read and written, KV of the context read.
  const int64_t wsize = DTypeSize(dtype);
  const int64_t embedding_params =
      config.tie_word_embeddings ? 0 : config.vocab_size * config.hidden_size;
  const int64_t inactive_expert_params = config.NumMoeLayers() *
                                         (config.num_experts - config.num_experts_per_tok) * 3 *
                                         config.hidden_size * config.intermediate_size;
  const int64_t active = params - embedding_params - inactive_expert_params;
  // Inactive experts are int8 with --int8-experts (their row scales, 1/k-th of a percent, are
  // counted as read).
  const int64_t expert_size = o.source.int8_experts ? 1 : wsize;
  const int64_t weight_read =
      stats.weight_bytes - embedding_params * wsize - inactive_expert_params * expert_size;
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
  if (on_cpu) {
    std::printf("device: cpu, %d threads   memory read bandwidth: %.2f GB/s\n",
                omp_get_max_threads(), bandwidth / 1e9);
  } else {
    std::printf("device: %s   memory bandwidth (device-to-device copy, read + write): %.1f GB/s\n",
                o.device.c_str(), bandwidth / 1e9);
  }
  std::printf("matmul precision: %s\n", o.matmul_precision.c_str());
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
  if (!prefill_lens->empty() || !contexts->empty()) {
    if (absl::Status s = LongContextRuns(o, dtype, *prefill_lens, *contexts); !s.ok()) {
      return Fail(s);
    }
  }
  return 0;
}

}  // namespace
}  // namespace jamba

int main(int argc, char** argv) { return jamba::Run(argc, argv); }
