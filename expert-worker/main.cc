// jamba-expert-worker: serves the ExpertWorker API for a set of (MoE layer, expert) pairs of a
// checkpoint, reading only those experts' weights. Stateless; run as many replicas as wanted.
#include <omp.h>

#include <csignal>
#include <iostream>
#include <memory>
#include <string>

#include "cli/flag_parser.h"
#include "expert-worker/expert_service.h"
#include "expert-worker/expert_set.h"
#include "rpc/serve.h"
#include "rpc/server.h"

namespace jamba {
namespace {

int Run(int argc, char** argv) {
  BlockTerminationSignals();
  std::string model_dir, listen = "127.0.0.1:0", experts = "all", weights = "f32";
  int32_t threads = 0, grace_s = 30;
  bool check_config = false;
  FlagParser flags("jamba-expert-worker --model DIR [--experts SPEC] [--listen HOST:PORT]",
                   "Holds MoE experts of a checkpoint and computes routed token batches for the\n"
                   "cluster's layer workers (gRPC service jamba.v1.ExpertWorker, plus\n"
                   "grpc.health.v1 and reflection). Prints 'listening on HOST:PORT' when ready.");
  flags.String("model", &model_dir, "checkpoint folder (required)", "", "DIR");
  flags.String("experts", &experts, "experts to hold: all, or LAYER:E,E;LAYER:E,... "
               "(only these are read from the checkpoint)", "", "SPEC");
  flags.String("listen", &listen, "address to serve on; port 0 picks a free one", "",
               "HOST:PORT");
  flags.String("weights", &weights, "weight matrices in f32 or bf16", "", "f32|bf16");
  flags.Int32("threads", &threads, "CPU threads; 0 = all cores");
  flags.Int32("grace-s", &grace_s, "on SIGTERM, seconds in-flight calls get to finish");
  flags.Bool("check-config", &check_config,
             "validate the flags and exit without loading or serving");
  if (absl::optional<int> exit = flags.ParseMain(argc, argv, "jamba-expert-worker")) return *exit;
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
  if (check_config) {
    std::cout << "configuration ok\n";
    return 0;
  }
  if (threads > 0) omp_set_num_threads(threads);
  std::unique_ptr<Backend> backend = CreateCpuBackend();
  LoadOptions options;
  options.weight_dtype = weights == "bf16" ? DType::kBF16 : DType::kF32;
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
  ExpertService service(std::move(backend), *std::move(model));
  auto server = StartServer(listen, {&service});
  if (!server.ok()) {
    std::cerr << "jamba-expert-worker: " << server.status().message() << "\n";
    return 1;
  }
  std::cout << "listening on " << BoundAddress(listen, server->port) << std::endl;
  ServeUntilSignal(server->server.get(), absl::Seconds(grace_s));
  return 0;
}

}  // namespace
}  // namespace jamba

int main(int argc, char** argv) { return jamba::Run(argc, argv); }
