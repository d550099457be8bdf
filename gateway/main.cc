// jamba-gateway: the cluster's front door. Serves the public jamba.v1.Jamba API (streaming
// generation, tokenization, model info), schedules every request with continuous batching
// over the layer workers (or over the whole model in this process when none are given),
// samples, and streams tokens back. Also grpc.health.v1 and reflection.
#include "kernels/cpu_threads.h"

#include <iostream>
#include <string>

#include "absl/strings/str_split.h"
#include "cli/flag_parser.h"
#include "cli/topology.h"
#include "gateway/gateway.h"
#include "gateway/gateway_metrics.h"
#include "kernels/backend_factory.h"
#include "metrics/device_metrics.h"
#include "metrics/telemetry.h"
#include "rpc/serve.h"
#include "rpc/server.h"

namespace jamba {
namespace {

int Run(int argc, char** argv) {
  BlockTerminationSignals();
  GatewayConfig config;
  std::string listen = "127.0.0.1:0", weights = "f32", metrics_listen, matmul_precision = "f32";
  int32_t threads = 0, grace_s = 30;
  int64_t connect_timeout_s = 120;
  bool check_config = false;
  FlagParser flags(
      "jamba-gateway --model DIR [--layer-workers ADDR,...] [--listen HOST:PORT]",
      "The public API of a jamba cluster. Reads config.json and tokenizer.json from DIR, checks\n"
      "that the layer workers (given in stage order) hold every layer of that same checkpoint,\n"
      "then schedules requests over them with continuous batching and chunked prefill. Without\n"
      "--layer-workers it loads the whole model and serves it in this process. Prints\n"
      "'listening on HOST:PORT' when ready.");
  flags.String("model", &config.model_dir, "checkpoint folder (required)", "", "DIR");
  flags.Custom(
      "layer-workers",
      [&](absl::string_view v) {
        for (absl::string_view a : absl::StrSplit(v, ',', absl::SkipWhitespace())) {
          config.layer_workers.emplace_back(a);
        }
        return absl::OkStatus();
      },
      "ADDR,...", "layer workers in stage order (comma-separated or repeated)");
  flags.Custom(
      "pipeline",
      [&](absl::string_view v) {
        std::vector<std::string> stages;
        for (absl::string_view a : absl::StrSplit(v, ',', absl::SkipWhitespace())) {
          stages.emplace_back(a);
        }
        if (stages.empty()) return absl::InvalidArgumentError("a pipeline needs layer workers");
        config.pipelines.push_back(std::move(stages));
        return absl::OkStatus();
      },
      "ADDR,...",
      "one more pipeline: its layer workers in stage order (repeat for each; with "
      "--layer-workers as the first). Pipelines share the expert workers; each sequence runs "
      "on one, chosen by free KV blocks and running count");
  flags.String("listen", &listen, "address to serve on; port 0 picks a free one", "", "HOST:PORT");
  flags.Int32("max-running", &config.scheduler.max_running,
              "sequences in the running batch at once", "scheduling");
  flags.Int32("max-tokens-per-step", &config.scheduler.max_tokens_per_step,
              "token rows of one forward step (decodes + prompt chunks)", "scheduling");
  flags.Int32("max-queue", &config.scheduler.max_queue,
              "waiting requests; more are rejected with RESOURCE_EXHAUSTED", "scheduling");
  flags.Int32("prefill-chunk", &config.scheduler.prefill_chunk,
              "prompt tokens of one sequence per step", "scheduling");
  flags.Int32("max-pending-tokens", &config.scheduler.max_pending_tokens,
              "tokens a slow client may lag before its sequence pauses", "scheduling");
  flags.Int32("pipeline-depth", &config.scheduler.pipeline_depth,
              "batches in flight at once (each running sequence in at most one), so every "
              "stage computes at once; 0: one per layer worker (1 in local mode)",
              "scheduling");
  flags.Int("connect-timeout-s", &connect_timeout_s,
            "how long to wait for the layer workers at start", "cluster");
  flags.Int32("grace-s", &grace_s, "on SIGTERM, seconds running streams get to finish", "cluster");
  flags.String("metrics-listen", &metrics_listen,
               "serve Prometheus metrics at http://HOST:PORT/metrics; empty: off", "", "HOST:PORT");
  flags.String("device", &config.device, std::string("local mode: ") + kDeviceFlagHelp, "local",
               "cpu|cuda[:N]");
  flags.String("matmul-precision", &matmul_precision,
               std::string("local mode: ") + kMatMulPrecisionFlagHelp, "local", "f32|bf16");
  flags.Bool("int8-experts", &config.int8_experts,
             std::string("local mode: ") +
                 "quantise MoE expert matrices to int8 at load (per-row scales, as ExpertsInt8)",
             "local");
  flags.String("weights", &weights, "local mode: weight matrices in f32 or bf16", "local",
               "f32|bf16");
  flags.Int32("threads", &threads, "local mode: CPU threads; 0 = all cores", "local");
  flags.Int32("max-sequences", &config.local.max_sequences,
              "local mode: live sequences (Mamba state slots)", "local");
  flags.Int("kv-cache-tokens", &config.local.kv_cache_tokens,
            "local mode: KV cache positions; 0: max-sequences x min(context, 4096)", "local");
  flags.Int("max-context", &config.local.max_context,
            "local mode: longest sequence; 0: the model's limit", "local");
  TopologyFlags topology;
  AddTopologyFlags(&flags, &topology, /*with_ordinal=*/false);
  flags.Bool("check-config", &check_config,
             "validate the flags (and read the --topology file), then exit; opens neither the "
             "model folder nor the network, so it runs where the weights are absent");
  if (absl::optional<int> exit = flags.ParseMain(argc, argv, "jamba-gateway")) return *exit;
  if (!topology.file.empty()) {
    absl::Status conflict = RejectReplacedFlags(flags, topology, {"layer-workers", "pipeline"});
    absl::StatusOr<Topology> layout = conflict.ok() ? ReadTopologyFile(topology.file) : conflict;
    if (!layout.ok()) {
      std::cerr << "jamba-gateway: " << layout.status().message() << "\n";
      return 2;
    }
    config.pipelines = layout->Pipelines();
  }
  absl::Status sched = ValidateSchedulerOptions(config.scheduler);
  if (config.model_dir.empty() || (weights != "f32" && weights != "bf16") || threads < 0 ||
      connect_timeout_s < 1 || grace_s < 0 || !sched.ok()) {
    std::cerr << "jamba-gateway: "
              << (sched.ok() ? std::string("--model is required, --weights is f32 or bf16, "
                                           "--threads >= 0, --connect-timeout-s >= 1 (see --help)")
                             : std::string(sched.message()))
              << "\n";
    return 2;
  }
  if (absl::Status s = CheckDeviceName(config.device); !s.ok()) {
    std::cerr << "jamba-gateway: --device: " << s.message() << "\n";
    return 2;
  }
  if (absl::StatusOr<MatMulPrecision> p = ParseMatMulPrecision(matmul_precision); p.ok()) {
    config.matmul_precision = *p;
  } else {
    std::cerr << "jamba-gateway: --matmul-precision: " << p.status().message() << "\n";
    return 2;
  }
  if (check_config) {
    std::cout << "configuration ok\n";
    return 0;
  }
  config.weight_dtype = weights == "bf16" ? DType::kBF16 : DType::kF32;
  config.pipeline.connect_timeout = absl::Seconds(connect_timeout_s);
  SetCpuThreads(threads);
  // Metrics exist before the gateway, whose scheduler reports to them from its first step.
  Telemetry telemetry(BuildInfo{
      "gateway",
      config.layer_workers.empty() && config.pipelines.empty() ? config.device : "remote", ""});
  GatewayMetrics metrics(telemetry);
  config.observer = &metrics;
  auto gateway = Gateway::Create(config);
  if (!gateway.ok()) {
    std::cerr << "jamba-gateway: " << gateway.status().message() << "\n";
    return 1;
  }
  metrics.ObserveScheduler(telemetry, (*gateway)->scheduler());
  telemetry.set_model_fingerprint((*gateway)->fingerprint());
  if ((*gateway)->local_backend() != nullptr) {
    AddDeviceMemoryMetrics(telemetry, (*gateway)->local_backend());
  }
  return ServeUntilTerminated("jamba-gateway", telemetry, listen, metrics_listen,
                              {(*gateway)->service()}, absl::Seconds(grace_s));
}

}  // namespace
}  // namespace jamba

int main(int argc, char** argv) { return jamba::Run(argc, argv); }
