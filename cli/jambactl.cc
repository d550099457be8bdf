// jambactl: the command-line client of a jamba-serving cluster (the jamba.v1.Jamba gRPC API
// and grpc.health.v1), built on the client SDK (client/client.h).
// Exit status: 0 success, 1 a call failed (or `health` found the server not SERVING), 2 bad
// usage, 130 interrupted by Ctrl-C.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "cli/cluster_command.h"
#include "cli/flag_parser.h"
#include "cli/sampling_flags.h"
#include "cli/size_command.h"
#include "client/client.h"
#include "nlohmann/json.hpp"

namespace jamba {
namespace {

constexpr int kExitRpcError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitInterrupted = 130;  // 128 + SIGINT, as shells report it

int UsageError(const std::string& command, const std::string& message) {
  std::cerr << "jambactl " << command << ": " << message << " (see --help)\n";
  return kExitUsage;
}

// "jambactl: Generate failed: INVALID_ARGUMENT: <server's message>". The SDK prefixes its
// messages with the method, which this line already names.
int RpcError(const std::string& method, const absl::Status& status) {
  absl::string_view message = status.message();
  absl::ConsumePrefix(&message, absl::StrCat(method, ": "));
  std::cerr << "jambactl: " << method << " failed: " << absl::StatusCodeToString(status.code())
            << ": " << message << "\n";
  return kExitRpcError;
}

// ---- Connection flags, common to every subcommand -----------------------------------------

struct ConnectionFlags {
  std::string target;
  int64_t deadline_ms = 0;
  int32_t max_attempts = client::ClientOptions().max_attempts;
  bool tls = false;
  std::string tls_ca_file;
};

void AddConnectionFlags(FlagParser* p, ConnectionFlags* c) {
  const std::string s = "Connection";
  p->String("target", &c->target, "address of the server, e.g. the gateway (required)", s,
            "HOST:PORT");
  p->Int("deadline-ms", &c->deadline_ms,
         "give up after this many milliseconds, retries included; 0 = no deadline", s);
  p->Int32("max-attempts", &c->max_attempts,
           "tries in all while the server is UNAVAILABLE, with exponential back-off; "
           "1 = no retries",
           s);
  p->Bool("tls", &c->tls, "connect with TLS", s);
  p->String("tls-ca-file", &c->tls_ca_file,
            "PEM root certificates that verify the server, with --tls [default: the system's]", s,
            "FILE");
}

// The client, or nullptr after printing why (and setting *exit_code).
std::unique_ptr<client::Client> Connect(const std::string& command, const ConnectionFlags& c,
                                        int* exit_code) {
  *exit_code = kExitUsage;
  if (c.target.empty()) {
    UsageError(command, "--target HOST:PORT is required");
    return nullptr;
  }
  if (c.deadline_ms < 0) {
    UsageError(command, "--deadline-ms must be >= 0");
    return nullptr;
  }
  if (c.max_attempts < 1) {
    UsageError(command, "--max-attempts must be >= 1");
    return nullptr;
  }
  if (!c.tls_ca_file.empty() && !c.tls) {
    UsageError(command, "--tls-ca-file needs --tls");
    return nullptr;
  }
  client::ClientOptions options;
  if (c.deadline_ms > 0) options.deadline = absl::Milliseconds(c.deadline_ms);
  options.max_attempts = c.max_attempts;
  options.tls = c.tls;
  if (!c.tls_ca_file.empty()) {
    std::ifstream in(c.tls_ca_file);
    std::stringstream pem;
    pem << in.rdbuf();
    if (!in || pem.str().empty()) {
      std::cerr << "jambactl " << command << ": cannot read --tls-ca-file " << c.tls_ca_file
                << "\n";
      *exit_code = kExitRpcError;
      return nullptr;
    }
    options.tls_root_certs_pem = pem.str();
  }
  auto client = client::Client::Connect(c.target, options);
  if (!client.ok()) {
    std::cerr << "jambactl " << command << ": " << client.status().message() << "\n";
    return nullptr;
  }
  *exit_code = 0;
  return *std::move(client);
}

// ---- Ctrl-C -------------------------------------------------------------------------------

// SIGINT writes one byte into this pipe (write() is async-signal-safe, a mutex is not); a
// watcher thread turns it into GenerateStream::Cancel(), so the server sees the call
// cancelled and frees the sequence instead of generating for nobody.
int g_interrupt_pipe[2] = {-1, -1};

extern "C" void OnSigint(int) {
  const int saved_errno = errno;
  const char byte = 'i';
  [[maybe_unused]] ssize_t n = write(g_interrupt_pipe[1], &byte, 1);
  errno = saved_errno;
}

class InterruptWatcher {
 public:
  // `stream` must outlive the watcher. A second Ctrl-C gets the default action (SA_RESETHAND).
  explicit InterruptWatcher(client::GenerateStream* stream) : stream_(stream) {
    if (pipe(g_interrupt_pipe) != 0) return;  // then Ctrl-C just kills the process
    thread_ = std::thread([this] { Watch(); });
    struct sigaction action = {};
    action.sa_handler = OnSigint;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART | SA_RESETHAND;
    sigaction(SIGINT, &action, &previous_);
  }
  ~InterruptWatcher() {
    if (!thread_.joinable()) return;
    sigaction(SIGINT, &previous_, nullptr);
    const char byte = 'q';
    [[maybe_unused]] ssize_t n = write(g_interrupt_pipe[1], &byte, 1);
    thread_.join();
    close(g_interrupt_pipe[0]);
    close(g_interrupt_pipe[1]);
  }
  bool interrupted() const { return interrupted_.load(); }

 private:
  void Watch() {
    for (;;) {
      char byte = 0;
      const ssize_t n = read(g_interrupt_pipe[0], &byte, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || byte == 'q') return;
      interrupted_.store(true);
      stream_->Cancel();
    }
  }

  client::GenerateStream* const stream_;
  std::atomic<bool> interrupted_{false};
  std::thread thread_;
  struct sigaction previous_ = {};
};

// ---- generate -----------------------------------------------------------------------------

struct GenerateFlags {
  ConnectionFlags connection;
  std::string prompt;
  std::vector<int32_t> token_ids;
  bool no_special_tokens = false;
  std::string request_id;
  bool json = false;
  bool quiet = false;
  SamplingParams sampling;
};

// The proto's `optional` fields are set only where a flag was given, so the server applies
// its own defaults (documented as jamba-run's) for the rest.
v1::SamplingParams ToProto(const SamplingParams& p, const FlagParser& flags) {
  v1::SamplingParams out;
  if (flags.Seen("temperature")) out.set_temperature(p.temperature);
  out.set_top_k(p.top_k);
  if (flags.Seen("top-p")) out.set_top_p(p.top_p);
  out.set_min_p(p.min_p);
  if (flags.Seen("repetition-penalty")) out.set_repetition_penalty(p.repetition_penalty);
  if (p.seed.has_value()) out.set_seed(*p.seed);
  out.set_max_new_tokens(p.max_new_tokens);
  for (int32_t id : p.stop_token_ids) out.add_stop_token_ids(id);
  for (const std::string& s : p.stop_strings) out.add_stop(s);
  out.set_ignore_eos(p.ignore_eos);
  // -1 means "off" for the flags; other values (even invalid ones) go to the server to judge.
  if (flags.Seen("logprobs") && p.logprobs != -1) out.set_logprobs(p.logprobs);
  if (flags.Seen("prompt-logprobs") && p.prompt_logprobs != -1) {
    out.set_prompt_logprobs(p.prompt_logprobs);
  }
  return out;
}

const char* FinishReasonName(v1::FinishReason reason) {
  switch (reason) {
    case v1::FINISH_REASON_STOP:
      return "stop";
    case v1::FINISH_REASON_LENGTH:
      return "length";
    default:
      return nullptr;
  }
}

nlohmann::json LogprobJson(const v1::TokenLogprob& lp) {
  nlohmann::json top = nlohmann::json::array();
  for (const v1::TopLogprob& t : lp.top()) {
    top.push_back({{"token_id", t.token_id()}, {"logprob", t.logprob()}});
  }
  return {{"token_id", lp.token_id()}, {"logprob", lp.logprob()}, {"top", top}};
}

int RunGenerate(int argc, char** argv) {
  GenerateFlags g;
  FlagParser flags(
      "jambactl generate --target HOST:PORT (--prompt TEXT | --token-ids ID,ID,...) [options]",
      "Generates a completion on a jamba-serving cluster and streams its text to stdout as it\n"
      "arrives (or, with --json, prints one JSON object at the end). The sampling flags mean\n"
      "what they mean for jamba-run. Ctrl-C cancels the request on the server and exits 130.");
  AddConnectionFlags(&flags, &g.connection);
  const std::string in = "Input";
  flags.String("prompt", &g.prompt, "prompt text, tokenized by the server", in);
  flags.Custom(
      "token-ids", [&g](absl::string_view v) { return ParseIdList(v, "token-ids", &g.token_ids); },
      "ID,ID,...", "prompt as token ids instead of text", in);
  flags.Bool("no-special-tokens", &g.no_special_tokens, "tokenize --prompt without adding BOS/EOS",
             in);
  flags.String("request-id", &g.request_id, "an id for the server's logs and errors", in, "ID");
  AddSamplingFlags(&flags, &g.sampling);
  const std::string out = "Output";
  flags.Bool("json", &g.json,
             "print one JSON object {token_ids, text, finish_reason, usage[, logprobs, "
             "prompt_logprobs]} instead of streaming text",
             out);
  flags.Bool("quiet", &g.quiet, "no summary line on stderr", out);

  if (absl::optional<int> exit = flags.ParseMain(argc, argv, "jambactl generate")) return *exit;
  if (flags.Seen("prompt") == flags.Seen("token-ids")) {
    return UsageError("generate", "give exactly one of --prompt and --token-ids");
  }
  int exit_code = 0;
  std::unique_ptr<client::Client> client = Connect("generate", g.connection, &exit_code);
  if (client == nullptr) return exit_code;

  v1::GenerateRequest request;
  if (flags.Seen("prompt")) {
    request.set_text(g.prompt);
  } else {
    request.mutable_token_ids()->mutable_ids()->Add(g.token_ids.begin(), g.token_ids.end());
  }
  *request.mutable_sampling() = ToProto(g.sampling, flags);
  request.set_skip_special_tokens_in_prompt(g.no_special_tokens);
  request.set_request_id(g.request_id);

  const auto t_start = std::chrono::steady_clock::now();
  std::unique_ptr<client::GenerateStream> stream = client->Generate(request);
  InterruptWatcher watcher(stream.get());
  v1::GenerateResponse result;  // the chunks put together
  bool printed_text = false;    // text mode: the line to end before leaving
  for (;;) {
    absl::StatusOr<std::optional<v1::GenerateChunk>> chunk = stream->Next();
    if (!chunk.ok()) {
      if (printed_text) std::cout << std::endl;
      if (watcher.interrupted()) return kExitInterrupted;
      return RpcError("Generate", chunk.status());
    }
    if (!chunk->has_value()) break;
    const v1::GenerateChunk& c = **chunk;
    if (!g.json && !c.text().empty()) {
      std::cout << c.text() << std::flush;
      printed_text = true;
    }
    result.mutable_token_ids()->MergeFrom(c.token_ids());
    result.mutable_text()->append(c.text());
    result.mutable_logprobs()->MergeFrom(c.logprobs());
    result.mutable_prompt_logprobs()->MergeFrom(c.prompt_logprobs());
    if (c.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      result.set_finish_reason(c.finish_reason());
    }
    if (c.has_usage()) *result.mutable_usage() = c.usage();
  }
  // A Ctrl-C that came after the last chunk still means the user asked to stop.
  if (watcher.interrupted()) {
    if (printed_text) std::cout << std::endl;
    return kExitInterrupted;
  }
  const char* finish_reason = FinishReasonName(result.finish_reason());
  if (g.json) {
    nlohmann::json j;
    j["token_ids"] = std::vector<int32_t>(result.token_ids().begin(), result.token_ids().end());
    j["text"] = result.text();
    j["finish_reason"] = finish_reason == nullptr ? nlohmann::json() : finish_reason;
    j["usage"] = {{"prompt_tokens", result.usage().prompt_tokens()},
                  {"completion_tokens", result.usage().completion_tokens()}};
    if (request.sampling().has_logprobs()) {
      j["logprobs"] = nlohmann::json::array();
      for (const auto& lp : result.logprobs()) j["logprobs"].push_back(LogprobJson(lp));
    }
    if (request.sampling().has_prompt_logprobs()) {
      j["prompt_logprobs"] = nlohmann::json::array();
      for (const auto& lp : result.prompt_logprobs()) {
        j["prompt_logprobs"].push_back(LogprobJson(lp));
      }
    }
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    std::cout << "\n";
  }
  std::cout << std::flush;  // the summary goes to stderr: keep it after the text
  if (!g.quiet) {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    std::fprintf(stderr, "[prompt %d tokens | generated %d tokens in %.2f s | finish_reason %s]\n",
                 result.usage().prompt_tokens(), result.usage().completion_tokens(), seconds,
                 finish_reason == nullptr ? "unspecified" : finish_reason);
  }
  return 0;
}

// ---- health -------------------------------------------------------------------------------

int RunHealth(int argc, char** argv) {
  ConnectionFlags c;
  FlagParser flags("jambactl health --target HOST:PORT [options]",
                   "Asks the server's grpc.health.v1 service about the whole server and prints\n"
                   "its answer (SERVING, NOT_SERVING, ...). Exits 0 only for SERVING.");
  AddConnectionFlags(&flags, &c);
  if (absl::optional<int> exit = flags.ParseMain(argc, argv, "jambactl health")) return *exit;
  int exit_code = 0;
  std::unique_ptr<client::Client> client = Connect("health", c, &exit_code);
  if (client == nullptr) return exit_code;
  absl::StatusOr<client::ServingStatus> status = client->Health();
  if (!status.ok()) return RpcError("Health", status.status());
  std::cout << client::ServingStatusName(*status) << "\n";
  return *status == client::ServingStatus::kServing ? 0 : kExitRpcError;
}

// ---- info ---------------------------------------------------------------------------------

std::string LayerName(const v1::LayerInfo& layer) {
  if (layer.ffn().empty() || layer.ffn() == "none") return layer.mixer();
  return absl::StrCat(layer.mixer(), "/", layer.ffn());
}

// The layer schedule in one line: "32 = 4 x [mamba/mlp mamba/moe ... attention/mlp ...]" when
// it repeats, else each layer with runs collapsed ("mamba/mlp x3, attention/mlp, ...").
std::string LayerSchedule(const google::protobuf::RepeatedPtrField<v1::LayerInfo>& layers) {
  std::vector<std::string> names;
  for (const v1::LayerInfo& l : layers) names.push_back(LayerName(l));
  const size_t n = names.size();
  if (n == 0) return "none";
  size_t period = 1;
  for (; period < n; ++period) {
    if (n % period != 0) continue;
    bool repeats = true;
    for (size_t i = period; i < n && repeats; ++i) repeats = names[i] == names[i % period];
    if (repeats) break;
  }
  if (period == 1) return absl::StrCat(n, " x ", names[0]);
  if (period < n) {
    return absl::StrCat(n, " = ", n / period, " x [",
                        absl::StrJoin(names.begin(), names.begin() + period, " "), "]");
  }
  std::vector<std::string> runs;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j < n && names[j] == names[i]) ++j;
    runs.push_back(j - i > 1 ? absl::StrCat(names[i], " x", j - i) : names[i]);
    i = j;
  }
  return absl::StrCat(n, ": ", absl::StrJoin(runs, ", "));
}

// "attention 4, mamba 28; mlp 16, moe 16": how many layers of each mixer and ffn kind.
std::string LayerCounts(const google::protobuf::RepeatedPtrField<v1::LayerInfo>& layers) {
  std::map<std::string, int> mixers, ffns;
  for (const v1::LayerInfo& l : layers) {
    ++mixers[l.mixer()];
    ++ffns[l.ffn().empty() ? "none" : l.ffn()];
  }
  auto join = [](const std::map<std::string, int>& m) {
    return absl::StrJoin(m, ", ", [](std::string* out, const auto& kv) {
      absl::StrAppend(out, kv.first, " ", kv.second);
    });
  };
  return absl::StrCat(join(mixers), "; ", join(ffns));
}

// "0-3,5,7-8" for sorted, distinct ids.
std::string Ranges(const std::vector<int32_t>& ids) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < ids.size();) {
    size_t j = i;
    while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) ++j;
    parts.push_back(j == i ? absl::StrCat(ids[i]) : absl::StrCat(ids[i], "-", ids[j]));
    i = j + 1;
  }
  return absl::StrJoin(parts, ",");
}

// "experts 0-7 of layers 1,3,5; experts 8-15 of layer 7": layers holding the same experts
// share one group.
std::string ExpertSummary(const v1::WorkerInfo& w) {
  std::map<int32_t, std::vector<int32_t>> by_layer;
  for (const v1::ExpertKey& k : w.experts()) by_layer[k.layer()].push_back(k.expert());
  std::map<std::string, std::vector<int32_t>> layers_by_experts;
  std::vector<std::string> order;
  for (auto& [layer, experts] : by_layer) {
    std::sort(experts.begin(), experts.end());
    experts.erase(std::unique(experts.begin(), experts.end()), experts.end());
    const std::string key = Ranges(experts);
    if (layers_by_experts.find(key) == layers_by_experts.end()) order.push_back(key);
    layers_by_experts[key].push_back(layer);
  }
  std::vector<std::string> groups;
  for (const std::string& key : order) {
    const std::vector<int32_t>& ls = layers_by_experts[key];
    groups.push_back(absl::StrCat("experts ", key, " of layer", ls.size() > 1 ? "s " : " ",
                                  absl::StrJoin(ls, ",")));
  }
  return groups.empty() ? "no experts" : absl::StrJoin(groups, "; ");
}

nlohmann::json ModelInfoJson(const v1::ModelInfoResponse& info) {
  nlohmann::json layers = nlohmann::json::array();
  for (const v1::LayerInfo& l : info.layers()) {
    layers.push_back({{"mixer", l.mixer()}, {"ffn", l.ffn()}});
  }
  nlohmann::json workers = nlohmann::json::array();
  for (const v1::WorkerInfo& w : info.workers()) {
    nlohmann::json worker = {{"address", w.address()}, {"role", w.role()}};
    if (w.role() == "layer") {
      worker["layer_begin"] = w.layer_begin();
      worker["layer_end"] = w.layer_end();
    } else {
      worker["experts"] = nlohmann::json::array();
      for (const v1::ExpertKey& k : w.experts()) {
        worker["experts"].push_back({{"layer", k.layer()}, {"expert", k.expert()}});
      }
    }
    workers.push_back(std::move(worker));
  }
  return {{"architecture", info.architecture()},   {"layers", layers},
          {"context_limit", info.context_limit()}, {"vocab_size", info.vocab_size()},
          {"fingerprint", info.fingerprint()},     {"workers", workers}};
}

void PrintModelInfo(const v1::ModelInfoResponse& info) {
  std::cout << "architecture   " << info.architecture() << "\n"
            << "layers         " << LayerSchedule(info.layers()) << "\n";
  if (info.layers_size() > 0)
    std::cout << "               (" << LayerCounts(info.layers()) << ")\n";
  std::cout << "context limit  " << info.context_limit() << " tokens\n"
            << "vocab size     " << info.vocab_size() << "\n"
            << "fingerprint    " << info.fingerprint() << "\n"
            << "workers        " << info.workers_size() << "\n";
  for (const v1::WorkerInfo& w : info.workers()) {
    std::cout << "  " << w.role() << std::string(w.role().size() < 7 ? 7 - w.role().size() : 1, ' ')
              << w.address() << "  ";
    if (w.role() == "layer") {
      std::cout << "layers [" << w.layer_begin() << ", " << w.layer_end() << ")";
    } else {
      std::cout << ExpertSummary(w);
    }
    std::cout << "\n";
  }
}

int RunInfo(int argc, char** argv) {
  ConnectionFlags c;
  bool json = false;
  FlagParser flags("jambactl info --target HOST:PORT [--json] [options]",
                   "Describes the model a jamba-serving cluster serves: architecture, layer\n"
                   "schedule, context limit, vocabulary, checkpoint fingerprint, and the workers\n"
                   "that hold its layers and experts.");
  AddConnectionFlags(&flags, &c);
  flags.Bool("json", &json, "print one JSON object (the ModelInfoResponse fields)", "Output");
  if (absl::optional<int> exit = flags.ParseMain(argc, argv, "jambactl info")) return *exit;
  int exit_code = 0;
  std::unique_ptr<client::Client> client = Connect("info", c, &exit_code);
  if (client == nullptr) return exit_code;
  absl::StatusOr<v1::ModelInfoResponse> info = client->ModelInfo();
  if (!info.ok()) return RpcError("ModelInfo", info.status());
  if (json) {
    std::cout << ModelInfoJson(*info).dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
              << "\n";
  } else {
    PrintModelInfo(*info);
  }
  return 0;
}

// ---- Dispatch -----------------------------------------------------------------------------

struct Subcommand {
  const char* name;
  const char* summary;  // one line for `jambactl --help`
  // argv[0] is the subcommand's name; its flags follow (FlagParser::ParseMain's convention).
  int (*run)(int argc, char** argv);
};

const Subcommand kSubcommands[] = {
    {"generate", "generate a completion, streamed as text or printed as JSON", RunGenerate},
    {"health", "check the server's health (grpc.health.v1): SERVING or not", RunHealth},
    {"info", "describe the served model and the workers that hold it", RunInfo},
    {"cluster", "cluster up: start a whole cluster on this machine (see jambactl cluster up "
                "--help)",
     RunClusterCommand},
    {"size", "memory needed by a model and by each worker of a layout, from config.json",
     RunSizeCommand},
};

std::string TopLevelHelp() {
  std::string out =
      "Usage: jambactl COMMAND [flags]    (jambactl COMMAND --help lists its flags)\n\n"
      "The command-line client of a jamba-serving cluster (the jamba.v1.Jamba gRPC API).\n\n"
      "Commands:\n";
  for (const Subcommand& s : kSubcommands) {
    std::string name = s.name;
    name.resize(std::max<size_t>(name.size() + 2, 12), ' ');
    absl::StrAppend(&out, "  ", name, s.summary, "\n");
  }
  absl::StrAppend(&out,
                  "\nExit status: 0 success; 1 a call failed (or health is not SERVING); 2 bad "
                  "usage;\n130 interrupted (Ctrl-C).\n");
  return out;
}

int Main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << TopLevelHelp();
    return kExitUsage;
  }
  const absl::string_view command = argv[1];
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << TopLevelHelp();
    return 0;
  }
  for (const Subcommand& s : kSubcommands) {
    if (command == s.name) return s.run(argc - 1, argv + 1);
  }
  std::cerr << "jambactl: unknown command '" << command << "' (see jambactl --help)\n";
  return kExitUsage;
}

}  // namespace
}  // namespace jamba

int main(int argc, char** argv) { return jamba::Main(argc, argv); }
