// jamba-layer-worker: one pipeline stage of the cluster. Holds a contiguous range of layers of
// a checkpoint (mixers, norms, dense MLPs, MoE routers; the embedding on the first stage, the
// head on the last) and the KV cache / Mamba state of every running sequence for them; sends
// MoE tokens to expert workers. Serves jamba.v1.LayerWorker, grpc.health.v1 and reflection.
#include "kernels/cpu_threads.h"

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "cli/flag_parser.h"
#include "cli/topology.h"
#include "kernels/backend.h"
#include "kernels/backend_factory.h"
#include "layer-worker/layer_service.h"
#include "metrics/device_metrics.h"
#include "metrics/telemetry.h"
#include "rpc/serve.h"
#include "rpc/server.h"

namespace jamba {
namespace {

int Run(int argc, char** argv) {
  BlockTerminationSignals();
  LayerWorkerConfig config;
  std::string listen = "127.0.0.1:0", weights = "f32", layers = "all", metrics_listen;
  std::string device = "cpu", matmul_precision = "f32";
  int32_t threads = 0, grace_s = 30;
  int64_t connect_timeout_s = 120, expert_timeout_ms = 30000;
  bool check_config = false;
  FlagParser flags(
      "jamba-layer-worker --model DIR --layers BEGIN:END [--expert-workers ADDR,...] "
      "[--listen HOST:PORT]",
      "One pipeline stage of a jamba cluster: layers [BEGIN, END) of the checkpoint and the\n"
      "per-sequence state (KV cache, Mamba conv/SSM) of those layers. MoE layers send their\n"
      "routed tokens to the expert workers given (all in parallel); without any, this process\n"
      "holds the experts itself. Prints 'listening on HOST:PORT' once the weights are loaded\n"
      "and every expert worker answered.");
  flags.String("model", &config.model_dir, "checkpoint folder (required)", "", "DIR");
  flags.String("layers", &layers, "layer range BEGIN:END (END exclusive), or all", "", "BEGIN:END");
  flags.Custom(
      "expert-workers",
      [&](absl::string_view v) {
        for (absl::string_view a : absl::StrSplit(v, ',', absl::SkipWhitespace())) {
          config.expert_workers.emplace_back(a);
        }
        return absl::OkStatus();
      },
      "ADDR,...",
      "expert workers (HOST:PORT, comma-separated or repeated); empty: hold "
      "every expert here");
  flags.String("listen", &listen, "address to serve on; port 0 picks a free one", "", "HOST:PORT");
  flags.String("weights", &weights, "weight matrices in f32 or bf16", "", "f32|bf16");
  flags.Int32("threads", &threads, "CPU threads; 0 = all cores");
  flags.String("device", &device, kDeviceFlagHelp, "", "cpu|cuda[:N]");
  flags.String("matmul-precision", &matmul_precision, kMatMulPrecisionFlagHelp, "", "f32|bf16");
  flags.Bool("int8-experts", &config.int8_experts,
             "quantise MoE expert matrices to int8 at load (per-row scales, as ExpertsInt8)"
             " when this worker holds experts");
  flags.Int32("max-sequences", &config.stage.max_sequences,
              "live sequences at once (Mamba state slots)", "state");
  flags.Int32("kv-block-size", &config.stage.kv_block_size, "token positions per KV block",
              "state");
  flags.Int("kv-cache-tokens", &config.stage.kv_cache_tokens,
            "KV cache size in token positions over all sequences; 0: max-sequences x "
            "min(context, 4096)",
            "state");
  flags.Int("max-context", &config.stage.max_context, "longest sequence; 0: the model's limit",
            "state");
  flags.Int32("micro-batches", &config.micro_batches,
              "parts each batch is split into, so that one part's layers compute while "
              "another's experts are computed by the expert workers (with --expert-workers); "
              "1: no split",
              "cluster");
  flags.Int("connect-timeout-s", &connect_timeout_s,
            "how long to wait for the expert workers at start", "cluster");
  flags.Int("expert-timeout-ms", &expert_timeout_ms, "deadline of one expert worker call",
            "cluster");
  flags.Int32("grace-s", &grace_s, "on SIGTERM, seconds in-flight calls get to finish", "cluster");
  flags.String("metrics-listen", &metrics_listen,
               "serve Prometheus metrics at http://HOST:PORT/metrics; empty: off", "", "HOST:PORT");
  TopologyFlags topology;
  AddTopologyFlags(&flags, &topology, /*with_ordinal=*/true);
  flags.Bool("check-config", &check_config,
             "validate the flags (and read the --topology file), then exit; opens neither the "
             "model folder nor the network, so it runs where the weights are absent",
             "cluster");
  if (absl::optional<int> exit = flags.ParseMain(argc, argv, "jamba-layer-worker")) return *exit;
  absl::Status conflict = RejectReplacedFlags(flags, topology, {"layers", "expert-workers"});
  Topology layout;
  absl::StatusOr<absl::optional<TopologyLayerWorker>> own =
      conflict.ok() ? LayerWorkerFromTopology(topology, listen, &layout) : conflict;
  if (!own.ok()) {
    std::cerr << "jamba-layer-worker: " << own.status().message() << "\n";
    return 2;
  }
  if (own->has_value()) {
    layers = (*own)->layers;
    // Every layer worker sends MoE tokens to every expert worker of the topology.
    config.expert_workers = layout.ExpertWorkerAddresses();
  }
  absl::Status range =
      ParseLayerRange(layers, /*allow_all=*/true, &config.layer_begin, &config.layer_end);
  if (config.model_dir.empty() || (weights != "f32" && weights != "bf16") || threads < 0 ||
      !range.ok() || connect_timeout_s < 1 || expert_timeout_ms < 1 || grace_s < 0 ||
      config.micro_batches < 1) {
    std::cerr << "jamba-layer-worker: "
              << (range.ok() ? "--model is required, --weights is f32 or bf16, --threads >= 0, "
                               "timeouts >= 1, --micro-batches >= 1 (see --help)"
                             : std::string("--") + std::string(range.message()))
              << "\n";
    return 2;
  }
  if (absl::Status s = CheckDeviceName(device); !s.ok()) {
    std::cerr << "jamba-layer-worker: --device: " << s.message() << "\n";
    return 2;
  }
  absl::StatusOr<MatMulPrecision> precision = ParseMatMulPrecision(matmul_precision);
  if (!precision.ok()) {
    std::cerr << "jamba-layer-worker: --matmul-precision: " << precision.status().message() << "\n";
    return 2;
  }
  if (check_config) {
    std::cout << "configuration ok\n";
    return 0;
  }
  config.weight_dtype = weights == "bf16" ? DType::kBF16 : DType::kF32;
  config.remote.connect_timeout = absl::Seconds(connect_timeout_s);
  config.remote.call_timeout = absl::Milliseconds(expert_timeout_ms);
  SetCpuThreads(threads);

  absl::StatusOr<std::unique_ptr<Backend>> backend =
      CreateBackend(device, BackendOptions{.matmul_precision = *precision});
  if (!backend.ok()) {
    std::cerr << "jamba-layer-worker: " << backend.status().message() << "\n";
    return 1;
  }
  const Backend* compute = backend->get();  // owned by the service from here on
  std::cout << "device " << compute->name() << std::endl;
  // Per-kind forward time metrics: free on the CPU; on a GPU they would synchronise the
  // stream after every block.
  config.stage.time_blocks = compute->device() == Device::kCpu;
  auto service = LayerService::Create(config, *std::move(backend));
  if (!service.ok()) {
    std::cerr << "jamba-layer-worker: " << service.status().message() << "\n";
    return 1;
  }
  LayerService* svc = service->get();
  Telemetry telemetry(BuildInfo{"layer_worker", compute->name(), svc->fingerprint()});
  AddDeviceMemoryMetrics(telemetry, compute);
  telemetry.AddScrapeTimeMetrics([svc] {
    const LayerService::Stats s = svc->GetStats();
    auto one = [](double v) { return std::vector<std::pair<MetricLabels, double>>{{{}, v}}; };
    const double kv_bytes = static_cast<double>(s.stage.kv_blocks_used) * s.stage.kv_block_size *
                            s.stage.kv_bytes_per_token;
    const double mamba_bytes =
        static_cast<double>(s.stage.mamba_slots_used) * s.stage.mamba_bytes_per_sequence;
    std::vector<std::pair<MetricLabels, double>> rows, requests, failures;
    for (const ExpertWorkerStats& w : s.expert_workers) {
      rows.push_back({{{"worker", w.address}}, static_cast<double>(w.rows)});
      requests.push_back({{{"worker", w.address}}, static_cast<double>(w.requests)});
      failures.push_back({{{"worker", w.address}}, static_cast<double>(w.failures)});
    }
    return std::vector<prometheus::MetricFamily>{
        GaugeFamily("jamba_kv_blocks_used", "KV cache blocks in use", one(s.stage.kv_blocks_used)),
        GaugeFamily("jamba_kv_blocks_capacity", "KV cache blocks", one(s.stage.kv_blocks_total)),
        GaugeFamily("jamba_stage_kv_blocks_reserved",
                    "KV cache blocks set aside for the live sequences' lifetimes (all gateways)",
                    one(static_cast<double>(s.stage.kv_blocks_reserved))),
        GaugeFamily("jamba_mamba_slots_used", "Mamba state slots in use",
                    one(s.stage.mamba_slots_used)),
        GaugeFamily("jamba_mamba_slots_capacity", "Mamba state slots",
                    one(s.stage.mamba_slots_total)),
        GaugeFamily("jamba_live_sequences", "Sequences whose state this stage holds",
                    one(s.stage.live_sequences)),
        GaugeFamily("jamba_state_bytes", "Bytes of per-sequence state held, by kind",
                    {{{{"kind", "kv"}}, kv_bytes}, {{{"kind", "mamba"}}, mamba_bytes}}),
        GaugeFamily("jamba_weight_bytes", "Bytes of weights held", one(s.stage.weight_bytes)),
        CounterFamily("jamba_forward_steps_total", "Forward calls run by this stage",
                      one(s.forward_calls)),
        CounterFamily("jamba_forward_tokens_total", "Token rows forwarded by this stage",
                      one(s.forward_tokens)),
        CounterFamily("jamba_forward_seconds_total",
                      "Time spent in forward calls (calls in flight at once overlap)",
                      one(s.forward_seconds)),
        CounterFamily("jamba_stage_busy_seconds_total",
                      "Time the stage's compute thread spent running batches; its rate is the "
                      "stage's busy fraction",
                      one(s.busy_seconds)),
        CounterFamily("jamba_layer_forward_seconds_total",
                      "Time spent in each kind of block (mixers with their norm and residual; "
                      "MoE includes the wait on expert workers)",
                      {{{{"kind", "attention"}}, s.stage.block_seconds.attention},
                       {{{"kind", "mamba"}}, s.stage.block_seconds.mamba},
                       {{{"kind", "mlp"}}, s.stage.block_seconds.mlp},
                       {{{"kind", "moe"}}, s.stage.block_seconds.moe}}),
        CounterFamily("jamba_expert_wait_seconds_total", "Time spent waiting on expert workers",
                      one(s.expert_wait_micros * 1e-6)),
        CounterFamily("jamba_expert_rows_sent_total", "Token rows sent, per expert worker", rows),
        CounterFamily("jamba_expert_calls_total", "Compute calls sent, per expert worker",
                      requests),
        CounterFamily("jamba_expert_call_failures_total",
                      "Compute calls that failed, per expert worker", failures),
    };
  });
  return ServeUntilTerminated("jamba-layer-worker", telemetry, listen, metrics_listen, {svc},
                              absl::Seconds(grace_s));
}

}  // namespace
}  // namespace jamba

int main(int argc, char** argv) { return jamba::Run(argc, argv); }
