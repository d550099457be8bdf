// jambactl as a user runs it (a real process: its stdout, stderr and exit status) against a
// scripted jamba.v1.Jamba server in this process.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "grpcpp/health_check_service_interface.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "rpc/server.h"
#include "tests/client/fake_jamba_service.h"

extern char** environ;

namespace jamba {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
namespace fs = std::filesystem;

struct RunResult {
  int exit_code = -1;  // -signal when killed by a signal
  std::string out, err;
};

// A running jambactl: stdout is a pipe, stderr goes to a file of its own (ctest runs the tests
// of this file as parallel processes).
class Jambactl {
 public:
  explicit Jambactl(const std::vector<std::string>& args) {
    static int counter = 0;
    const fs::path dir = fs::path(::testing::TempDir()) / "jambactl_test";
    fs::create_directories(dir);
    err_path_ = (dir / absl::StrCat("stderr_", getpid(), "_", counter++, ".txt")).string();
    std::vector<std::string> argv_storage = {absl::StrCat(JAMBA_BINARY_DIR, "/cli/jambactl")};
    argv_storage.insert(argv_storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : argv_storage) argv.push_back(a.data());
    argv.push_back(nullptr);

    int out[2];
    if (pipe(out) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    posix_spawn_file_actions_addclose(&actions, out[1]);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_path_.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
    close(out[1]);
    out_fd_ = out[0];
  }
  ~Jambactl() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (out_fd_ >= 0) close(out_fd_);
  }

  bool started() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

  // Reads stdout until it contains `text` (true) or ends (false).
  bool ReadUntil(const std::string& text) {
    while (out_.find(text) == std::string::npos) {
      if (!ReadSome()) return false;
    }
    return true;
  }

  // Reads the rest of stdout and waits for the exit.
  RunResult Wait() {
    while (ReadSome()) {
    }
    RunResult r;
    int status = 0;
    if (pid_ > 0 && waitpid(pid_, &status, 0) == pid_) {
      r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    }
    pid_ = -1;
    r.out = out_;
    std::ifstream err(err_path_);
    r.err.assign(std::istreambuf_iterator<char>(err), std::istreambuf_iterator<char>());
    return r;
  }

 private:
  bool ReadSome() {
    if (out_fd_ < 0) return false;
    char buf[4096];
    const ssize_t n = read(out_fd_, buf, sizeof(buf));
    if (n <= 0) return false;
    out_.append(buf, n);
    return true;
  }

  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string err_path_;
  std::string out_;
};

RunResult RunJambactl(const std::vector<std::string>& args) { return Jambactl(args).Wait(); }

class JambactlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto running = StartServer("127.0.0.1:0", {&fake_});
    ASSERT_TRUE(running.ok()) << running.status();
    server_ = *std::move(running);
    target_ = absl::StrCat("127.0.0.1:", server_.port);
  }
  void TearDown() override {
    if (server_.server) server_.server->Shutdown(std::chrono::system_clock::now());
  }

  // `generate --target <fake> args...`
  RunResult Generate(std::vector<std::string> args) {
    args.insert(args.begin(), {"generate", "--target", target_});
    return RunJambactl(args);
  }

  FakeJambaService fake_;
  RunningServer server_;
  std::string target_;
};

FakeBehavior HelloBehavior() {
  FakeBehavior b;
  b.chunks = {Chunk({5, 6}, "Hel"), Chunk({7}, "lo"),
              FinalChunk({}, "", v1::FINISH_REASON_LENGTH, 3, 3)};
  return b;
}

TEST_F(JambactlTest, GenerateJsonPrintsTheWholeCompletion) {
  fake_.set_behavior(HelloBehavior());
  RunResult r =
      Generate({"--prompt", "hi there", "--max-new-tokens", "3", "--temperature", "0", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_EQ(j["token_ids"].get<std::vector<int32_t>>(), (std::vector<int32_t>{5, 6, 7}));
  EXPECT_EQ(j["text"], "Hello");
  EXPECT_EQ(j["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 3);
  EXPECT_EQ(j["usage"]["completion_tokens"], 3);
  EXPECT_FALSE(j.contains("logprobs"));

  // Only the flags given become set `optional` fields; the server fills in the rest.
  const v1::GenerateRequest request = fake_.last_generate_request();
  EXPECT_EQ(request.text(), "hi there");
  const v1::SamplingParams& s = request.sampling();
  ASSERT_TRUE(s.has_temperature());
  EXPECT_EQ(s.temperature(), 0.0f);
  EXPECT_FALSE(s.has_top_p());
  EXPECT_FALSE(s.has_repetition_penalty());
  EXPECT_FALSE(s.has_seed());
  EXPECT_FALSE(s.has_logprobs());
  EXPECT_FALSE(s.has_prompt_logprobs());
  EXPECT_EQ(s.max_new_tokens(), 3);
  EXPECT_FALSE(request.skip_special_tokens_in_prompt());
}

TEST_F(JambactlTest, GenerateMapsEveryFlagOntoTheRequest) {
  FakeBehavior b = HelloBehavior();
  v1::TokenLogprob* lp = b.chunks[0].add_logprobs();
  lp->set_token_id(5);
  lp->set_logprob(-0.5f);
  v1::TopLogprob* top = lp->add_top();
  top->set_token_id(9);
  top->set_logprob(-1.5f);
  fake_.set_behavior(b);
  // clang-format off
  RunResult r = Generate({"--token-ids", "1, 2,3", "--top-k", "40", "--top-p", "0.5", "--min-p",
                          "0.05", "--repetition-penalty", "1.1", "--seed", "7",
                          "--stop-token-ids", "2,518", "--stop", "END", "--stop", "\n\n",
                          "--ignore-eos", "--logprobs", "1", "--prompt-logprobs", "-1",
                          "--no-special-tokens", "--request-id", "r-9", "--deadline-ms", "60000",
                          "--max-attempts", "2", "--json", "--quiet"});
  // clang-format on
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");  // --quiet
  const v1::GenerateRequest request = fake_.last_generate_request();
  ASSERT_TRUE(request.has_token_ids());
  EXPECT_THAT(request.token_ids().ids(), ::testing::ElementsAre(1, 2, 3));
  EXPECT_EQ(request.request_id(), "r-9");
  EXPECT_TRUE(request.skip_special_tokens_in_prompt());
  const v1::SamplingParams& s = request.sampling();
  EXPECT_FALSE(s.has_temperature());
  EXPECT_EQ(s.top_k(), 40);
  ASSERT_TRUE(s.has_top_p());
  EXPECT_FLOAT_EQ(s.top_p(), 0.5f);
  EXPECT_FLOAT_EQ(s.min_p(), 0.05f);
  ASSERT_TRUE(s.has_repetition_penalty());
  EXPECT_FLOAT_EQ(s.repetition_penalty(), 1.1f);
  ASSERT_TRUE(s.has_seed());
  EXPECT_EQ(s.seed(), 7u);
  EXPECT_EQ(s.max_new_tokens(), 16);  // jamba-run's default, sent as is
  EXPECT_THAT(s.stop_token_ids(), ::testing::ElementsAre(2, 518));
  EXPECT_THAT(s.stop(), ::testing::ElementsAre("END", "\n\n"));
  EXPECT_TRUE(s.ignore_eos());
  ASSERT_TRUE(s.has_logprobs());
  EXPECT_EQ(s.logprobs(), 1);
  EXPECT_FALSE(s.has_prompt_logprobs());  // -1 = off

  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  ASSERT_EQ(j["logprobs"].size(), 1u);
  EXPECT_EQ(j["logprobs"][0]["token_id"], 5);
  EXPECT_EQ(j["logprobs"][0]["logprob"], -0.5);
  EXPECT_EQ(j["logprobs"][0]["top"][0]["token_id"], 9);
  EXPECT_FALSE(j.contains("prompt_logprobs"));
}

TEST_F(JambactlTest, GenerateStreamsTextToStdout) {
  fake_.set_behavior(HelloBehavior());
  RunResult r = Generate({"--prompt", "hi"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "Hello\n");
  EXPECT_THAT(r.err, HasSubstr("generated 3 tokens"));
  EXPECT_THAT(r.err, HasSubstr("finish_reason length"));
}

TEST_F(JambactlTest, UsageErrorsExitTwoAndNameTheProblem) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"generate", "--target", target_, "--prompt", "x", "--bogus"}, "unknown flag --bogus"},
      {{"generate", "--target", target_, "--prompt", "x", "--token-ids", "1"},
       "exactly one of --prompt and --token-ids"},
      {{"generate", "--target", target_}, "exactly one of --prompt and --token-ids"},
      {{"generate", "--prompt", "x"}, "--target HOST:PORT is required"},
      {{"generate", "--target", target_, "--prompt", "x", "--temperature", "warm"},
       "--temperature: expected a number, got 'warm'"},
      {{"generate", "--target", target_, "--token-ids", "1,x"}, "'x' is not an integer token id"},
      {{"generate", "--target", target_, "--prompt", "x", "--deadline-ms", "-1"},
       "--deadline-ms must be >= 0"},
      {{"health", "--target", target_, "extra"}, "unexpected argument 'extra'"},
      {{"info"}, "--target HOST:PORT is required"},
      {{"frobnicate"}, "unknown command 'frobnicate'"},
      {{}, "Usage: jambactl COMMAND"},
  };
  for (const Case& c : cases) {
    RunResult r = RunJambactl(c.args);
    EXPECT_EQ(r.exit_code, 2) << absl::StrJoin(c.args, " ") << "\n" << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.message)) << absl::StrJoin(c.args, " ");
    EXPECT_EQ(r.out, "") << absl::StrJoin(c.args, " ");
  }
  EXPECT_EQ(fake_.calls("Generate"), 0);
}

TEST_F(JambactlTest, ClusterUpRejectsBadLayoutsBeforeStartingAnything) {
  const std::string demo = std::string(JAMBA_SOURCE_DIR) + "/models/jamba-demo";
  struct Case {
    std::vector<std::string> args;
    int exit_code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"cluster", "up"}, 2, "--model is required"},
      {{"cluster", "up", "--model", demo, "--layer-workers", "9"}, 2, "layer-workers must be in"},
      {{"cluster", "up", "--model", demo, "--expert-workers", "2", "--replicas", "3"}, 2,
       "replicas must be in"},
      {{"cluster", "up", "--model", demo, "--port", "70000"}, 2, "--port must be in"},
      {{"cluster", "up", "--model", "/nonexistent-model-dir"}, 1, "nonexistent-model-dir"},
      {{"cluster", "down"}, 2, "unknown action 'down'"},
  };
  for (const Case& c : cases) {
    RunResult r = RunJambactl(c.args);
    EXPECT_EQ(r.exit_code, c.exit_code) << absl::StrJoin(c.args, " ") << "\n" << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.message)) << absl::StrJoin(c.args, " ");
    EXPECT_THAT(r.err, Not(HasSubstr("listening on"))) << absl::StrJoin(c.args, " ");
  }
}

// `jambactl size` prints the engine's accounting (memory_plan_test checks it against the
// hand-computed Jamba-v0.1 counts) split over the layout cluster up would build.
TEST(JambactlSizeTest, JsonReportOfAJambaV01Layout) {
  const std::string config =
      std::string(JAMBA_TEST_DATA_DIR) + "/config/jamba_v0_1/config.json";
  RunResult r = RunJambactl({"size", "--config", config, "--json", "--layer-workers", "2",
                             "--expert-workers", "4", "--sequences", "8", "--context", "1000"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_EQ(j["parameters"], 51570323328);
  EXPECT_EQ(j["active_parameters"], 12110311296);
  EXPECT_EQ(j["kv_bytes_per_token"], 32768);
  EXPECT_EQ(j["mamba_bytes_per_sequence"], 17432576);
  ASSERT_EQ(j["workers"].size(), 6u);
  // Layers [0, 16) and [16, 32): two attention layers (4, 12 | 20, 28) and 14 Mamba layers
  // each; state = 8 x (1000 x 16 KiB + 14 x 8192 x 19 x 4 bytes).
  for (int w = 0; w < 2; ++w) {
    EXPECT_EQ(j["workers"][w]["role"], "layer");
    EXPECT_EQ(j["workers"][w]["kv_bytes_per_token"], 16384);
    EXPECT_EQ(j["workers"][w]["state_bytes"], 8 * (1000 * 16384 + 14LL * 8192 * 19 * 4));
  }
  // 256 experts of 3 x 14336 x 4096 bf16 values each, 64 per expert worker.
  for (int w = 2; w < 6; ++w) {
    EXPECT_EQ(j["workers"][w]["role"], "expert");
    EXPECT_EQ(j["workers"][w]["experts"], 64);
    EXPECT_EQ(j["workers"][w]["weight_bytes"], 64LL * 3 * 14336 * 4096 * 2);
  }
  int64_t weights = 0;
  for (const auto& w : j["workers"]) weights += w["weight_bytes"].get<int64_t>();
  EXPECT_EQ(weights, j["weight_bytes"].get<int64_t>());  // untied: nothing held twice
}

TEST(JambactlSizeTest, UsageErrors) {
  const std::string config =
      std::string(JAMBA_TEST_DATA_DIR) + "/config/jamba_v0_1/config.json";
  struct Case {
    std::vector<std::string> args;
    int exit_code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"size"}, 2, "give exactly one of --model and --config"},
      {{"size", "--config", config, "--model", "x"}, 2, "give exactly one of"},
      {{"size", "--config", config, "--weights", "int4"}, 2, "--weights must be bf16 or f32"},
      {{"size", "--config", config, "--sequences", "0"}, 2, "--sequences must be >= 1"},
      {{"size", "--config", config, "--layer-workers", "33"}, 2, "layer-workers must be in"},
      {{"size", "--config", "/nonexistent/config.json"}, 1, "cannot read /nonexistent"},
      {{"size", "--model", "/nonexistent-model-dir"}, 1, "nonexistent-model-dir"},
  };
  for (const Case& c : cases) {
    RunResult r = RunJambactl(c.args);
    EXPECT_EQ(r.exit_code, c.exit_code) << absl::StrJoin(c.args, " ") << "\n" << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.message)) << absl::StrJoin(c.args, " ");
    EXPECT_EQ(r.out, "") << absl::StrJoin(c.args, " ");
  }
}

// cluster up checks its flags before starting anything.
TEST(JambactlClusterUpTest, UsageErrors) {
  const std::string model = std::string(JAMBA_TEST_DATA_DIR) + "/models/mixtral";
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"cluster", "up"}, "--model is required"},
      {{"cluster", "up", "--model", model, "--device", "gpu"},
       "--device: unknown device 'gpu': expected cpu, cuda or cuda:N"},
      {{"cluster", "up", "--model", model, "--device", "cuda:-1"}, "--device: unknown device"},
      {{"cluster", "up", "--model", model, "--device", "cuda:0,,cuda:1"},
       "--device: unknown device '': expected cpu, cuda or cuda:N"},
      {{"cluster", "up", "--model", model, "--device", "cuda:0,gpu1"},
       "--device: unknown device 'gpu1'"},
      {{"cluster", "up", "--model", model, "--layer-workers", "1", "--expert-workers", "1",
        "--device", "cuda:0,cuda:1,cuda:2"},
       "--device lists 3 devices for 2 workers; some would go unused"},
      {{"cluster", "up", "--model", model, "--weights", "int4"}, "--weights is f32 or bf16"},
      {{"cluster", "up", "--model", model, "--matmul-precision", "fp8"},
       "--matmul-precision: unknown matmul precision 'fp8': expected f32 or bf16"},
  };
  for (const Case& c : cases) {
    RunResult r = RunJambactl(c.args);
    EXPECT_EQ(r.exit_code, 2) << absl::StrJoin(c.args, " ") << "\n" << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.message)) << absl::StrJoin(c.args, " ");
    EXPECT_EQ(r.out, "") << absl::StrJoin(c.args, " ");
  }
}

TEST_F(JambactlTest, ServerErrorExitsOneWithTheCode) {
  FakeBehavior b;
  b.error = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "sampling.top_p must be in (0, 1]");
  fake_.set_behavior(b);
  RunResult r = Generate({"--prompt", "x", "--top-p", "2"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("jambactl: Generate failed: INVALID_ARGUMENT: "
                               "sampling.top_p must be in (0, 1]\n"));
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(fake_.calls("Generate"), 1);
  r = Generate({"--prompt", "x", "--json"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr("INVALID_ARGUMENT"));
}

TEST_F(JambactlTest, UnreachableServerExitsOneWithUnavailable) {
  auto closed = StartServer("127.0.0.1:0", {});
  ASSERT_TRUE(closed.ok());
  const std::string target = absl::StrCat("127.0.0.1:", closed->port);
  closed->server->Shutdown();
  RunResult r = RunJambactl({"info", "--target", target, "--max-attempts", "2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("jambactl: ModelInfo failed: UNAVAILABLE: "));
  EXPECT_THAT(r.err, HasSubstr("(after 2 attempts)"));
  r = RunJambactl({"health", "--target", target, "--max-attempts", "1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("jambactl: Health failed: UNAVAILABLE: "));
}

TEST_F(JambactlTest, CtrlCCancelsTheStreamAndExits130) {
  FakeBehavior b;
  b.chunks = {Chunk({5}, "partial")};
  b.hang_after_chunks = true;
  fake_.set_behavior(b);
  Jambactl process({"generate", "--target", target_, "--prompt", "x"});
  ASSERT_TRUE(process.started());
  // The chunk on stdout means the call is under way (and the handler installed before it).
  ASSERT_TRUE(process.ReadUntil("partial"));
  ASSERT_EQ(kill(process.pid(), SIGINT), 0);
  RunResult r = process.Wait();
  EXPECT_EQ(r.exit_code, 130) << r.err;
  EXPECT_EQ(r.out, "partial\n");
  EXPECT_TRUE(fake_.WaitForCancelledCalls(1, absl::Seconds(10)));
}

TEST_F(JambactlTest, HealthPrintsTheServingStatus) {
  RunResult r = RunJambactl({"health", "--target", target_});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "SERVING\n");
  server_.server->GetHealthCheckService()->SetServingStatus(false);
  r = RunJambactl({"health", "--target", target_});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.out, "NOT_SERVING\n");
}

v1::ModelInfoResponse JambaLikeInfo() {
  v1::ModelInfoResponse info;
  info.set_architecture("jamba");
  for (int i = 0; i < 16; ++i) {
    v1::LayerInfo* l = info.add_layers();
    l->set_mixer(i % 8 == 4 ? "attention" : "mamba");
    l->set_ffn(i % 2 == 1 ? "moe" : "mlp");
  }
  info.set_context_limit(262144);
  info.set_vocab_size(65536);
  info.set_fingerprint("sha256:0123abcd");
  v1::WorkerInfo* layer = info.add_workers();
  layer->set_address("10.0.0.1:7001");
  layer->set_role("layer");
  layer->set_layer_begin(0);
  layer->set_layer_end(16);
  v1::WorkerInfo* expert = info.add_workers();
  expert->set_address("10.0.0.2:7002");
  expert->set_role("expert");
  for (int layer_index : {1, 3}) {
    for (int e = 0; e < 4; ++e) {
      v1::ExpertKey* k = expert->add_experts();
      k->set_layer(layer_index);
      k->set_expert(e);
    }
  }
  return info;
}

TEST_F(JambactlTest, InfoPrintsTheModel) {
  FakeBehavior b;
  b.model_info = JambaLikeInfo();
  fake_.set_behavior(b);
  RunResult r = RunJambactl({"info", "--target", target_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("architecture   jamba\n"));
  EXPECT_THAT(r.out, HasSubstr("layers         16 = 2 x [mamba/mlp mamba/moe mamba/mlp mamba/moe "
                               "attention/mlp mamba/moe mamba/mlp mamba/moe]\n"));
  EXPECT_THAT(r.out, HasSubstr("(attention 2, mamba 14; mlp 8, moe 8)"));
  EXPECT_THAT(r.out, HasSubstr("context limit  262144 tokens\n"));
  EXPECT_THAT(r.out, HasSubstr("vocab size     65536\n"));
  EXPECT_THAT(r.out, HasSubstr("fingerprint    sha256:0123abcd\n"));
  EXPECT_THAT(r.out, HasSubstr("layer  10.0.0.1:7001  layers [0, 16)\n"));
  EXPECT_THAT(r.out, HasSubstr("expert 10.0.0.2:7002  experts 0-3 of layers 1,3\n"));
}

TEST_F(JambactlTest, InfoJson) {
  FakeBehavior b;
  b.model_info = JambaLikeInfo();
  fake_.set_behavior(b);
  RunResult r = RunJambactl({"info", "--target", target_, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_EQ(j["architecture"], "jamba");
  ASSERT_EQ(j["layers"].size(), 16u);
  EXPECT_EQ(j["layers"][4]["mixer"], "attention");
  EXPECT_EQ(j["layers"][1]["ffn"], "moe");
  EXPECT_EQ(j["context_limit"], 262144);
  EXPECT_EQ(j["vocab_size"], 65536);
  EXPECT_EQ(j["fingerprint"], "sha256:0123abcd");
  ASSERT_EQ(j["workers"].size(), 2u);
  EXPECT_EQ(j["workers"][0]["layer_end"], 16);
  EXPECT_EQ(j["workers"][1]["experts"].size(), 8u);
  EXPECT_EQ(j["workers"][1]["experts"][7]["layer"], 3);
}

TEST_F(JambactlTest, HelpListsCommandsAndEveryFlag) {
  RunResult r = RunJambactl({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* command : {"generate", "health", "info"}) {
    EXPECT_THAT(r.out, HasSubstr(absl::StrCat("\n  ", command, " "))) << command;
  }
  r = RunJambactl({"generate", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  // clang-format off
  for (const char* flag :
       {"--target HOST:PORT", "--deadline-ms", "--max-attempts", "--tls ", "--tls-ca-file",
        "--prompt", "--token-ids", "--no-special-tokens", "--request-id", "--max-new-tokens",
        "--temperature", "--top-k", "--top-p", "--min-p", "--repetition-penalty", "--seed",
        "--stop-token-ids", "--stop ", "--ignore-eos", "--logprobs", "--prompt-logprobs",
        "--json", "--quiet", "--help"}) {
    // clang-format on
    EXPECT_THAT(r.out, HasSubstr(flag)) << flag;
  }
  r = RunJambactl({"info", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("--json"));
  EXPECT_THAT(r.out, Not(HasSubstr("--prompt")));
}

}  // namespace
}  // namespace jamba
