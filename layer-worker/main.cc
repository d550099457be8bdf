// jamba-layer-worker: one pipeline stage of the cluster. Holds a contiguous range of layers of
// a checkpoint (mixers, norms, dense MLPs, MoE routers; the embedding on the first stage, the
// head on the last) and the KV cache / Mamba state of every running sequence for them; sends
// MoE tokens to expert workers. Serves jamba.v1.LayerWorker, grpc.health.v1 and reflection.
#include <omp.h>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "cli/flag_parser.h"
#include "kernels/backend.h"
#include "layer-worker/layer_service.h"
#include "rpc/serve.h"
#include "rpc/server.h"

namespace jamba {
namespace {

absl::Status ParseLayerRange(absl::string_view text, int64_t* begin, int64_t* end) {
  if (text == "all") {
    *begin = 0;
    *end = -1;
    return absl::OkStatus();
  }
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], begin) ||
      !absl::SimpleAtoi(parts[1], end) || *begin < 0 || *end <= *begin) {
    return absl::InvalidArgumentError(
        absl::StrCat("layers: expected BEGIN:END with 0 <= BEGIN < END, or all; got '", text,
                     "'"));
  }
  return absl::OkStatus();
}

int Run(int argc, char** argv) {
  BlockTerminationSignals();
  LayerWorkerConfig config;
  std::string listen = "127.0.0.1:0", weights = "f32", layers = "all";
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
  flags.String("layers", &layers, "layer range BEGIN:END (END exclusive), or all", "",
               "BEGIN:END");
  flags.Custom(
      "expert-workers",
      [&](absl::string_view v) {
        for (absl::string_view a : absl::StrSplit(v, ',', absl::SkipWhitespace())) {
          config.expert_workers.emplace_back(a);
        }
        return absl::OkStatus();
      },
      "ADDR,...", "expert workers (HOST:PORT, comma-separated or repeated); empty: hold "
      "every expert here");
  flags.String("listen", &listen, "address to serve on; port 0 picks a free one", "",
               "HOST:PORT");
  flags.String("weights", &weights, "weight matrices in f32 or bf16", "", "f32|bf16");
  flags.Int32("threads", &threads, "CPU threads; 0 = all cores");
  flags.Int32("max-sequences", &config.stage.max_sequences,
              "live sequences at once (Mamba state slots)", "state");
  flags.Int32("kv-block-size", &config.stage.kv_block_size, "token positions per KV block",
              "state");
  flags.Int("kv-cache-tokens", &config.stage.kv_cache_tokens,
            "KV cache size in token positions over all sequences; 0: max-sequences x "
            "min(context, 4096)", "state");
  flags.Int("max-context", &config.stage.max_context,
            "longest sequence; 0: the model's limit", "state");
  flags.Int("connect-timeout-s", &connect_timeout_s,
            "how long to wait for the expert workers at start", "cluster");
  flags.Int("expert-timeout-ms", &expert_timeout_ms, "deadline of one expert worker call",
            "cluster");
  flags.Int32("grace-s", &grace_s, "on SIGTERM, seconds in-flight calls get to finish",
              "cluster");
  flags.Bool("check-config", &check_config,
             "validate the flags and exit without loading or serving", "cluster");
  if (absl::optional<int> exit = flags.ParseMain(argc, argv, "jamba-layer-worker")) return *exit;
  absl::Status range = ParseLayerRange(layers, &config.layer_begin, &config.layer_end);
  if (config.model_dir.empty() || (weights != "f32" && weights != "bf16") || threads < 0 ||
      !range.ok() || connect_timeout_s < 1 || expert_timeout_ms < 1 || grace_s < 0) {
    std::cerr << "jamba-layer-worker: "
              << (range.ok() ? "--model is required, --weights is f32 or bf16, --threads >= 0, "
                               "timeouts >= 1 (see --help)"
                             : std::string("--") + std::string(range.message()))
              << "\n";
    return 2;
  }
  if (check_config) {
    std::cout << "configuration ok\n";
    return 0;
  }
  config.weight_dtype = weights == "bf16" ? DType::kBF16 : DType::kF32;
  config.remote.connect_timeout = absl::Seconds(connect_timeout_s);
  config.remote.call_timeout = absl::Milliseconds(expert_timeout_ms);
  if (threads > 0) omp_set_num_threads(threads);

  auto service = LayerService::Create(config, CreateCpuBackend());
  if (!service.ok()) {
    std::cerr << "jamba-layer-worker: " << service.status().message() << "\n";
    return 1;
  }
  auto server = StartServer(listen, {service->get()});
  if (!server.ok()) {
    std::cerr << "jamba-layer-worker: " << server.status().message() << "\n";
    return 1;
  }
  std::cout << "listening on " << BoundAddress(listen, server->port) << std::endl;
  ServeUntilSignal(server->server.get(), absl::Seconds(grace_s));
  return 0;
}

}  // namespace
}  // namespace jamba

int main(int argc, char** argv) { return jamba::Run(argc, argv); }
