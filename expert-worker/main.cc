// jamba-expert-worker: serves the ExpertWorker API for a set of (MoE layer, expert) pairs of a
// checkpoint, reading only those experts' weights. Stateless; run as many replicas as wanted.
#include "kernels/cpu_threads.h"

#include <csignal>
#include <iostream>
#include <memory>
#include <string>

#include "cli/flag_parser.h"
#include "cli/topology.h"
#include "expert-worker/expert_service.h"
#include "expert-worker/expert_set.h"
#include "kernels/backend_factory.h"
#include "metrics/device_metrics.h"
#include "metrics/telemetry.h"
#include "rpc/serve.h"
#include "rpc/server.h"

namespace jamba {
namespace {

int Run(int argc, char** argv) {
  BlockTerminationSignals();
  std::string model_dir, listen = "127.0.0.1:0", experts = "all", weights = "f32";
  std::string metrics_listen, device = "cpu", matmul_precision = "f32";
  int32_t threads = 0, grace_s = 30;
  bool check_config = false, int8_experts = false, merge_requests = false;
  FlagParser flags("jamba-expert-worker --model DIR [--experts SPEC] [--listen HOST:PORT]",
                   "Holds MoE experts of a checkpoint and computes routed token batches for the\n"
                   "cluster's layer workers (gRPC service jamba.v1.ExpertWorker, plus\n"
                   "grpc.health.v1 and reflection). Prints 'listening on HOST:PORT' when ready.");
  flags.String("model", &model_dir, "checkpoint folder (required)", "", "DIR");
  flags.String("experts", &experts,
               "experts to hold: all, or LAYER:E,E;LAYER:E,... "
               "(only these are read from the checkpoint)",
               "", "SPEC");
  flags.String("listen", &listen, "address to serve on; port 0 picks a free one", "", "HOST:PORT");
  flags.String("weights", &weights, "weight matrices in f32 or bf16", "", "f32|bf16");
  flags.Int32("threads", &threads, "CPU threads; 0 = all cores");
  flags.String("device", &device, kDeviceFlagHelp, "", "cpu|cuda[:N]");
  flags.String("matmul-precision", &matmul_precision, kMatMulPrecisionFlagHelp, "", "f32|bf16");
  flags.Bool("int8-experts", &int8_experts,
             "quantise MoE expert matrices to int8 at load (per-row scales, as ExpertsInt8)");
  flags.Int32("grace-s", &grace_s, "on SIGTERM, seconds in-flight calls get to finish");
  flags.String("metrics-listen", &metrics_listen,
               "serve Prometheus metrics at http://HOST:PORT/metrics; empty: off", "", "HOST:PORT");
  TopologyFlags topology;
  AddTopologyFlags(&flags, &topology, /*with_ordinal=*/true);
  flags.Bool("merge-requests", &merge_requests,
             "compute requests that arrive while one computes together, each expert's rows of "
             "all of them in one product (weights read once); off: one request at a time");
  flags.Bool("check-config", &check_config,
             "validate the flags (and read the --topology file), then exit; opens neither the "
             "model folder nor the network, so it runs where the weights are absent");
  if (absl::optional<int> exit = flags.ParseMain(argc, argv, "jamba-expert-worker")) return *exit;
  absl::Status conflict = RejectReplacedFlags(flags, topology, {"experts"});
  absl::StatusOr<absl::optional<TopologyExpertWorker>> own =
      conflict.ok() ? ExpertWorkerFromTopology(topology, listen) : conflict;
  if (!own.ok()) {
    std::cerr << "jamba-expert-worker: " << own.status().message() << "\n";
    return 2;
  }
  if (own->has_value()) experts = (*own)->experts;
  if (model_dir.empty() || (weights != "f32" && weights != "bf16") || threads < 0 || grace_s < 0) {
    std::cerr << "jamba-expert-worker: --model is required, --weights is f32 or bf16, "
                 "--threads >= 0 (see --help)\n";
    return 2;
  }
  auto set = ParseExpertSet(experts);
  if (!set.ok()) {
    std::cerr << "jamba-expert-worker: --" << set.status().message() << "\n";
    return 2;
  }
  if (absl::Status s = CheckDeviceName(device); !s.ok()) {
    std::cerr << "jamba-expert-worker: --device: " << s.message() << "\n";
    return 2;
  }
  absl::StatusOr<MatMulPrecision> precision = ParseMatMulPrecision(matmul_precision);
  if (!precision.ok()) {
    std::cerr << "jamba-expert-worker: --matmul-precision: " << precision.status().message()
              << "\n";
    return 2;
  }
  if (check_config) {
    std::cout << "configuration ok\n";
    return 0;
  }
  SetCpuThreads(threads);
  absl::StatusOr<std::unique_ptr<Backend>> created =
      CreateBackend(device, BackendOptions{.matmul_precision = *precision});
  if (!created.ok()) {
    std::cerr << "jamba-expert-worker: " << created.status().message() << "\n";
    return 1;
  }
  std::unique_ptr<Backend> backend = *std::move(created);
  const Backend* compute = backend.get();  // owned by the service once it exists
  std::cout << "device " << compute->name() << std::endl;
  LoadOptions options;
  options.weight_dtype = weights == "bf16" ? DType::kBF16 : DType::kF32;
  options.int8_experts = int8_experts;
  options.shard.experts_only = true;
  ExpertSet wanted = *set;
  options.shard.want_expert = [wanted](int64_t layer, int64_t e) {
    return wanted.Contains(layer, e);
  };
  auto model = Model::Load(model_dir, options, backend.get());
  if (!model.ok()) {
    std::cerr << "jamba-expert-worker: " << model.status().message() << "\n";
    return 1;
  }
  ExpertService service(std::move(backend), *std::move(model), merge_requests);
  Telemetry telemetry(BuildInfo{"expert_worker", compute->name(), service.model().fingerprint()});
  AddDeviceMemoryMetrics(telemetry, compute);
  telemetry.AddScrapeTimeMetrics([&service] {
    const ExpertService::Stats s = service.GetStats();
    std::vector<std::pair<MetricLabels, double>> tokens;
    for (const auto& [key, n] : s.tokens) {
      tokens.push_back(
          {{{"layer", std::to_string(key.first)}, {"expert", std::to_string(key.second)}},
           static_cast<double>(n)});
    }
    return std::vector<prometheus::MetricFamily>{
        CounterFamily("jamba_expert_tokens_total",
                      "Token rows computed, per (MoE layer, expert) held here", tokens),
        CounterFamily("jamba_expert_requests_total", "Compute requests served",
                      {{{}, static_cast<double>(s.requests)}}),
        CounterFamily("jamba_expert_merged_requests_total",
                      "Compute requests computed in one round with others (each expert's rows "
                      "of all of them in one product)",
                      {{{}, static_cast<double>(s.merged_requests)}}),
        GaugeFamily("jamba_expert_queue_depth",
                    "Compute requests received and not yet answered (one computes, the rest "
                    "wait)",
                    {{{}, static_cast<double>(service.queue_depth())}}),
        CounterFamily("jamba_expert_batches_total", "(layer, expert) batches computed",
                      {{{}, static_cast<double>(s.batches)}}),
        CounterFamily("jamba_expert_compute_seconds_total", "Time spent computing experts",
                      {{{}, s.compute_seconds}}),
    };
  });
  return ServeUntilTerminated("jamba-expert-worker", telemetry, listen, metrics_listen, {&service},
                              absl::Seconds(grace_s));
}

}  // namespace
}  // namespace jamba

int main(int argc, char** argv) { return jamba::Run(argc, argv); }
