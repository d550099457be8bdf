#include "cli/cluster_command.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/cluster_plan.h"
#include "cli/flag_parser.h"
#include "cli/local_cluster.h"
#include "engine/config/model_config.h"
#include "kernels/backend_factory.h"

namespace jamba {
namespace {

int RunUp(int argc, char** argv) {
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGINT);
  sigaddset(&term, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &term, nullptr);

  std::string model, host = "127.0.0.1", weights = "f32", device = "cpu", bin_dir;
  std::string matmul_precision = "f32";
  int32_t layer_workers = 2, expert_workers = 2, replicas = 1, port = 50051, threads = 0;
  int32_t max_running = 16, max_sequences = 16, grace_s = 30, pipeline_depth = 0;
  int32_t micro_batches = 1, pipelines = 1;
  int64_t start_timeout_s = 300;
  FlagParser flags(
      "jambactl cluster up --model DIR [--layer-workers N] [--expert-workers M] "
      "[--replicas R] [--port P]",
      "Starts a whole cluster on this machine: M expert workers (every expert of every MoE\n"
      "layer held by R of them), N layer workers (contiguous layer ranges balanced by their\n"
      "work, pipeline order; --pipelines P such sets, sharing the expert workers) and\n"
      "the gateway on HOST:P. Waits until every process is healthy, prints the endpoints and\n"
      "'cluster ready: gateway HOST:P', forwards the processes' logs to stderr, and stops them\n"
      "all cleanly on Ctrl-C or SIGTERM (exit 0). If a process dies, stops the rest (exit 1).");
  flags.String("model", &model, "checkpoint folder (required)", "", "DIR");
  flags.Int32("layer-workers", &layer_workers, "pipeline stages");
  flags.Int32("expert-workers", &expert_workers,
              "expert worker processes; 0: the layer workers hold the experts");
  flags.Int32("replicas", &replicas, "expert workers holding each expert");
  flags.Int32("port", &port, "gateway port (0: a free one)");
  flags.String("host", &host, "address every process binds", "", "HOST");
  flags.String("weights", &weights, "weight matrices in f32 or bf16", "", "f32|bf16");
  flags.String("device", &device,
               "where the expert and layer workers compute (the gateway needs no device): one\n"
               "device for all, or a comma-separated list dealt round-robin over the workers in\n"
               "start order (expert workers first), e.g. cuda:0,cuda:1,cuda:2,cuda:3",
               "", "cpu|cuda[:N][,...]");
  flags.String("matmul-precision", &matmul_precision, kMatMulPrecisionFlagHelp, "", "f32|bf16");
  flags.Int32("threads", &threads, "CPU threads per process; 0 = all cores");
  flags.Int32("max-running", &max_running, "gateway: sequences in the running batch");
  flags.Int32("max-sequences", &max_sequences, "layer workers: live sequences (state slots)");
  flags.Int32("pipelines", &pipelines,
              "full sets of layer workers (data parallel), sharing the expert workers");
  flags.Int32("pipeline-depth", &pipeline_depth,
              "gateway: batches in flight at once; 0: one per layer worker");
  flags.Int32("micro-batches", &micro_batches,
              "layer workers: parts of each batch, so that mixers compute while experts do");
  flags.Int("start-timeout-s", &start_timeout_s, "how long each process may take to start");
  flags.Int32("grace-s", &grace_s, "on stop, seconds each process gets to drain");
  flags.String("bin-dir", &bin_dir,
               "folder with jamba-gateway, jamba-layer-worker, jamba-expert-worker; default: "
               "next to jambactl or in its build tree",
               "", "DIR");
  if (absl::optional<int> exit = flags.ParseMain(argc, argv, "jambactl cluster up")) {
    return *exit;
  }
  auto usage = [](const std::string& m) {
    std::cerr << "jambactl cluster up: " << m << " (see --help)\n";
    return 2;
  };
  if (model.empty()) return usage("--model is required");
  if (port < 0 || port > 65535) return usage(absl::StrCat("--port must be in [0, 65535]"));
  if (weights != "f32" && weights != "bf16") return usage("--weights is f32 or bf16");
  const std::vector<std::string> devices = absl::StrSplit(device, ',');
  for (const std::string& d : devices) {
    if (absl::Status s = CheckDeviceName(d); !s.ok()) {
      return usage(absl::StrCat("--device: ", s.message()));
    }
  }
  if (absl::Status s = ParseMatMulPrecision(matmul_precision).status(); !s.ok()) {
    return usage(absl::StrCat("--matmul-precision: ", s.message()));
  }
  if (threads < 0 || grace_s < 0 || start_timeout_s < 1 || max_running < 1 || max_sequences < 1 ||
      pipeline_depth < 0 || micro_batches < 1) {
    return usage("--threads, --grace-s and --pipeline-depth must be >= 0, the others >= 1");
  }
  absl::StatusOr<ModelConfig> config = LoadModelConfig(model);
  if (!config.ok()) {
    std::cerr << "jambactl cluster up: " << config.status().message() << "\n";
    return 1;
  }
  absl::StatusOr<ClusterPlan> plan =
      PlanCluster(*config, layer_workers, expert_workers, replicas, pipelines);
  if (!plan.ok()) return usage(std::string("--") + std::string(plan.status().message()));
  LocalClusterOptions lo;
  lo.model = model;
  const size_t workers = plan->expert_specs.size() + plan->layer_devices.size();
  if (devices.size() > workers) {
    return usage(absl::StrCat("--device lists ", devices.size(), " devices for ", workers,
                              " workers; some would go unused"));
  }
  AssignDevices(devices, &*plan);
  lo.plan = *std::move(plan);
  lo.host = host;
  lo.port = port;
  lo.weights = weights;
  lo.matmul_precision = matmul_precision;
  lo.threads = threads;
  lo.max_running = max_running;
  lo.max_sequences = max_sequences;
  lo.pipeline_depth = pipeline_depth;
  lo.micro_batches = micro_batches;
  lo.grace_s = grace_s;
  lo.start_timeout = absl::Seconds(start_timeout_s);
  lo.bin_dir = bin_dir;
  absl::StatusOr<std::unique_ptr<LocalCluster>> cluster = LocalCluster::Start(lo);
  if (!cluster.ok()) {
    std::cerr << "jambactl cluster up: " << cluster.status().message() << "\n";
    return 1;
  }
  const std::vector<std::string>& experts = (*cluster)->expert_workers();
  const std::vector<std::string>& layers = (*cluster)->layer_workers();
  for (size_t i = 0; i < experts.size(); ++i) {
    std::cout << "expert worker " << i << "  " << experts[i] << "  " << lo.plan.expert_devices[i]
              << "  experts " << lo.plan.expert_specs[i] << "\n";
  }
  const size_t stages = lo.plan.layer_ranges.size();
  for (size_t i = 0; i < layers.size(); ++i) {
    const size_t stage = i % stages;
    std::cout << "layer worker " << i << "   " << layers[i] << "  " << lo.plan.layer_devices[i]
              << "  layers [" << lo.plan.layer_ranges[stage].first << ", "
              << lo.plan.layer_ranges[stage].second << ")";
    if (lo.plan.pipelines > 1) std::cout << "  pipeline " << i / stages;
    std::cout << "\n";
  }
  std::cout << "cluster ready: gateway " << (*cluster)->gateway() << std::endl;

  // Until Ctrl-C / SIGTERM, or a process dies.
  while (true) {
    timespec tick{0, 200 * 1000 * 1000};
    const int sig = sigtimedwait(&term, nullptr, &tick);
    if (sig == SIGINT || sig == SIGTERM) break;
    if (const ChildProcess* dead = (*cluster)->Dead()) {
      std::cerr << "jambactl cluster up: " << dead->name() << " exited; stopping the cluster\n";
      (*cluster)->Stop(absl::Seconds(grace_s));
      return 1;
    }
  }
  std::cerr << "jambactl cluster up: stopping\n";
  return (*cluster)->Stop(absl::Seconds(grace_s + 5)) ? 0 : 1;
}

}  // namespace

int RunClusterCommand(int argc, char** argv) {
  const std::string action = argc >= 2 ? argv[1] : "";
  if (action == "up") return RunUp(argc - 1, argv + 1);
  if (action == "--help" || action == "-h") {
    std::cout << "Usage: jambactl cluster up --model DIR [options]\n"
                 "Starts a local cluster; see jambactl cluster up --help.\n";
    return 0;
  }
  std::cerr << "jambactl cluster: unknown action '" << action << "' (expected: up)\n";
  return 2;
}

}  // namespace jamba
