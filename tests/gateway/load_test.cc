// The real binaries under load: two expert workers, two layer workers and a gateway on the
// demo model, started as processes (one process group, killed if the test fails), then 64
// concurrent streams. Every stream must get exactly the single process's tokens, every pool
// must drain, memory must come back to its idle level, and SIGTERM must end every process
// cleanly.
#include <fcntl.h>
#include <omp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "engine/checkpoint/checkpoint.h"
#include "engine/runtime/engine.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "jamba/v1/layer_worker.grpc.pb.h"
#include "kernels/backend.h"
#include "rpc/channel.h"
#include "tests/gateway/cluster_test_util.h"
#include "tests/gateway/in_process_cluster.h"

namespace jamba {
namespace {

constexpr int kStreams = 64;
constexpr int32_t kNewTokens = 24;
// Growth of a process's resident memory allowed between the idle level (after one warm-up
// request) and the end of the load (two rounds, 128 requests). Weights and the KV / Mamba
// pools are allocated and zeroed at start, so they are in the idle level already; what may
// legitimately grow is bounded by the peak batch, not by the number of requests served: the
// step workspace (bounded by --max-tokens-per-step 128: activations and 128 x 4096 f32
// logits, a few MiB), gRPC's buffers, and 64 handler threads' stacks and malloc arenas.
// Measured on this model: +4..10 MiB for the layer and expert workers, +10..14 MiB for the
// gateway, flat from the first round to the fourth. 32 MiB leaves room for allocator noise,
// while leaking per-token state would exceed it: e.g. the 16 KiB logits row of every step of
// every sequence (128 x 24 x 16 KiB = 48 MiB).
constexpr int64_t kRssToleranceKiB = 32 << 10;

std::string Binary(const std::string& relative) {
  return absl::StrCat(JAMBA_BINARY_DIR, "/", relative);
}

std::string DemoDir() { return absl::StrCat(JAMBA_SOURCE_DIR, "/models/jamba-demo"); }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// One child process; stdout and stderr go to `log`.
class Process {
 public:
  // Starts argv[0] in process group `pgid` (0: a new group led by this process). The child is
  // killed if the test process dies.
  static absl::StatusOr<std::unique_ptr<Process>> Spawn(const std::vector<std::string>& args,
                                                        const std::string& log, pid_t pgid) {
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    // Five processes share the machine's cores and mostly wait on each other: OpenMP threads
    // must not spin while waiting (an explicit setting in the environment wins).
    std::vector<std::string> env_storage;
    for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
    if (getenv("OMP_WAIT_POLICY") == nullptr) env_storage.push_back("OMP_WAIT_POLICY=PASSIVE");
    std::vector<char*> envp;
    for (std::string& e : env_storage) envp.push_back(e.data());
    envp.push_back(nullptr);
    const pid_t pid = fork();
    if (pid < 0) return absl::InternalError("fork failed");
    if (pid == 0) {  // only async-signal-safe calls until exec
      setpgid(0, pgid);
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
      }
      execve(argv[0], argv.data(), envp.data());
      _exit(127);
    }
    setpgid(pid, pgid == 0 ? pid : pgid);  // also from here, so it holds before we signal
    auto p = std::unique_ptr<Process>(new Process());
    p->pid_ = pid;
    p->log_ = log;
    p->name_ = args[0].substr(args[0].rfind('/') + 1);
    return p;
  }

  ~Process() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  pid_t pid() const { return pid_; }
  bool exited() const { return exited_; }
  const std::string& name() const { return name_; }
  std::string Log() const { return ReadFile(log_); }

  // The address from the "listening on HOST:PORT" line, once printed (bounded wait).
  absl::StatusOr<std::string> WaitListening(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    const std::string marker = "listening on ";
    while (true) {
      const std::string log = Log();
      const size_t at = log.find(marker);
      if (at != std::string::npos) {
        const size_t end = log.find('\n', at);
        if (end != std::string::npos) {
          return log.substr(at + marker.size(), end - at - marker.size());
        }
      }
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return absl::FailedPreconditionError(
            absl::StrCat(name_, " exited before listening:\n", log));
      }
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(absl::StrCat(name_, " is not listening:\n", log));
      }
      absl::SleepFor(absl::Milliseconds(10));  // polling interval of a bounded wait
    }
  }

  // Resident set size from /proc/PID/status, in KiB; -1 if unreadable.
  int64_t VmRssKiB() const {
    std::istringstream in(ReadFile(absl::StrCat("/proc/", pid_, "/status")));
    std::string line;
    while (std::getline(in, line)) {
      if (!absl::StartsWith(line, "VmRSS:")) continue;
      std::istringstream fields(line.substr(6));
      int64_t kib = -1;
      fields >> kib;
      return kib;
    }
    return -1;
  }

  // The exit status once the process ends within `timeout`; DeadlineExceeded otherwise.
  absl::StatusOr<int> WaitExit(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (true) {
      int status = 0;
      const pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exited_ = true;
        if (WIFEXITED(status)) return WEXITSTATUS(status);
        return absl::AbortedError(absl::StrCat(name_, " killed by signal ", WTERMSIG(status)));
      }
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(absl::StrCat(name_, " still running"));
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
  }

 private:
  Process() = default;
  pid_t pid_ = -1;
  bool exited_ = false;
  std::string log_, name_;
};

class LoadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "jamba_load_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    // Whatever is still running (a failed test) goes with its whole group.
    bool running = false;
    for (const auto& p : processes_) running = running || !p->exited();
    if (running && pgid_ > 0) kill(-pgid_, SIGKILL);
    if (HasFailure()) {
      for (const auto& p : processes_) {
        std::cerr << "---- " << p->name() << " (pid " << p->pid() << ") log:\n" << p->Log();
      }
    }
    processes_.clear();  // reaps
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  Process* Start(std::vector<std::string> args, const std::string& log_name) {
    auto p = Process::Spawn(args, absl::StrCat(dir_, "/", log_name, ".log"), pgid_);
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return nullptr;
    if (pgid_ == 0) pgid_ = (*p)->pid();
    processes_.push_back(*std::move(p));
    return processes_.back().get();
  }

  std::string dir_;
  pid_t pgid_ = 0;
  std::vector<std::unique_ptr<Process>> processes_;
};

absl::StatusOr<std::vector<v1::ShardInfoResponse>> ShardInfos(
    const std::vector<std::string>& addresses) {
  std::vector<v1::ShardInfoResponse> out(addresses.size());
  for (size_t i = 0; i < addresses.size(); ++i) {
    auto stub = v1::LayerWorker::NewStub(MakeInternalChannel(addresses[i]));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::Status s = stub->ShardInfo(&ctx, v1::ShardInfoRequest(), &out[i]);
    if (!s.ok()) return absl::UnavailableError(s.error_message());
  }
  return out;
}

// Polls the layer workers until their pools are empty (bounded).
absl::Status WaitForEmptyPools(const std::vector<std::string>& addresses, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    auto infos = ShardInfos(addresses);
    if (!infos.ok()) return infos.status();
    std::string why;
    bool empty = true;
    for (const auto& info : *infos) {
      std::string w;
      if (!PoolsEmpty(info, &w)) {
        empty = false;
        absl::StrAppend(&why, w, "; ");
      }
    }
    if (empty) return absl::OkStatus();
    if (absl::Now() > deadline) return absl::DeadlineExceededError(why);
    absl::SleepFor(absl::Milliseconds(10));
  }
}

TEST_F(LoadTest, SixtyFourConcurrentStreamsOnRealProcesses) {
  const absl::Time start = absl::Now();
  auto checkpoint = Checkpoint::Open(DemoDir());
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  const ModelConfig config = (*checkpoint)->config();
  const std::vector<std::string> specs = DefaultExpertSpecs(config, 2);
  ASSERT_EQ(specs.size(), 2u);

  // ---- The cluster. One CPU thread per process: the machine is shared by five of them.
  std::vector<Process*> experts, layers;
  for (size_t i = 0; i < specs.size(); ++i) {
    Process* p = Start({Binary("expert-worker/jamba-expert-worker"), "--model", DemoDir(),
                        "--experts", specs[i], "--threads", "1", "--listen", "127.0.0.1:0"},
                       absl::StrCat("expert", i));
    ASSERT_NE(p, nullptr);
    experts.push_back(p);
  }
  std::vector<std::string> expert_addresses, layer_addresses;
  for (Process* p : experts) {
    auto a = p->WaitListening(absl::Seconds(60));
    ASSERT_TRUE(a.ok()) << a.status();
    expert_addresses.push_back(*a);
  }
  for (const auto& [begin, end] : EvenLayerSplit(config.num_layers, 2)) {
    Process* p =
        Start({Binary("layer-worker/jamba-layer-worker"), "--model", DemoDir(), "--layers",
               absl::StrCat(begin, ":", end), "--expert-workers",
               absl::StrJoin(expert_addresses, ","), "--max-sequences", absl::StrCat(kStreams),
               "--kv-cache-tokens", "8192", "--threads", "1", "--listen", "127.0.0.1:0"},
              absl::StrCat("layer", begin));
    ASSERT_NE(p, nullptr);
    layers.push_back(p);
  }
  for (Process* p : layers) {
    auto a = p->WaitListening(absl::Seconds(60));
    ASSERT_TRUE(a.ok()) << a.status();
    layer_addresses.push_back(*a);
  }
  Process* gateway =
      Start({Binary("gateway/jamba-gateway"), "--model", DemoDir(), "--layer-workers",
             absl::StrJoin(layer_addresses, ","), "--max-running", absl::StrCat(kStreams),
             "--max-tokens-per-step", "128",  // bounds the step workspace (kRssToleranceKiB)
             "--threads", "1", "--listen", "127.0.0.1:0"},
            "gateway");
  ASSERT_NE(gateway, nullptr);
  auto gateway_address = gateway->WaitListening(absl::Seconds(60));
  ASSERT_TRUE(gateway_address.ok()) << gateway_address.status();
  auto stub = v1::Jamba::NewStub(MakeInternalChannel(*gateway_address));

  // ---- References: each prompt alone on an in-test Engine.
  // One thread: OpenMP threads spinning between this process's steps would compete with
  // everything else on a shared machine (measured: 3x slower references).
  omp_set_num_threads(1);
  auto backend = CreateCpuBackend();
  auto engine = Engine::Create(DemoDir(), EngineOptions{}, backend.get());
  ASSERT_TRUE(engine.ok()) << engine.status();
  const SamplingParams params = TestSampling(kNewTokens);
  std::vector<std::vector<int32_t>> prompts, want;
  for (int i = 0; i < kStreams; ++i) {
    // Distinct prompts of 3..33 tokens after BOS, from the non-special ids.
    std::vector<int32_t> p = {1};
    const std::vector<int32_t> body = TestPrompt(3 + i % 31, config.vocab_size, i, 4);
    p.insert(p.end(), body.begin(), body.end());
    auto r = SoloGenerate(engine->get(), p, params);
    ASSERT_TRUE(r.ok()) << r.status();
    prompts.push_back(std::move(p));
    want.push_back(r->token_ids);
  }

  // ---- Warm-up, then the idle memory level.
  StreamResult warm = RunGenerate(stub.get(), IdsRequest(prompts[0], params));
  ASSERT_TRUE(warm.status.ok()) << warm.status.error_message();
  ASSERT_EQ(warm.token_ids, want[0]);
  ASSERT_TRUE(WaitForEmptyPools(layer_addresses, absl::Seconds(10)).ok());
  std::vector<int64_t> idle_rss;
  for (const auto& p : processes_) idle_rss.push_back(p->VmRssKiB());

  // ---- The load, twice: in each round every stream is released at once.
  auto run_load = [&](int round) {
    std::vector<StreamResult> results(kStreams);
    absl::Notification go;
    std::vector<std::thread> threads;
    for (int i = 0; i < kStreams; ++i) {
      threads.emplace_back([&, i] {
        go.WaitForNotification();
        results[i] = RunGenerate(stub.get(), IdsRequest(prompts[i], params), 60);
      });
    }
    const absl::Time load_start = absl::Now();
    go.Notify();
    for (std::thread& t : threads) t.join();
    std::cerr << "round " << round << ": " << kStreams << " streams x " << kNewTokens
              << " tokens in " << absl::FormatDuration(absl::Now() - load_start) << "\n";
    for (int i = 0; i < kStreams; ++i) {
      SCOPED_TRACE(testing::Message() << "round " << round << ", stream " << i);
      const StreamResult& r = results[i];
      ASSERT_TRUE(r.status.ok()) << r.status.error_message();
      EXPECT_EQ(r.token_ids, want[i]);  // none lost, duplicated or reordered
      EXPECT_EQ(r.token_ids.size(), static_cast<size_t>(kNewTokens));
      EXPECT_EQ(r.finish_reason, v1::FINISH_REASON_LENGTH);
      EXPECT_EQ(r.finish_chunks, 1);
      EXPECT_EQ(r.prompt_tokens, static_cast<int32_t>(prompts[i].size()));
      EXPECT_EQ(r.completion_tokens, kNewTokens);
    }
    // Afterwards: pools drained.
    absl::Status drained = WaitForEmptyPools(layer_addresses, absl::Seconds(10));
    EXPECT_TRUE(drained.ok()) << drained;
  };
  std::vector<std::vector<int64_t>> rss(1, idle_rss);
  for (int round = 1; round <= 2; ++round) {
    ASSERT_NO_FATAL_FAILURE(run_load(round));
    rss.emplace_back();
    for (const auto& p : processes_) rss.back().push_back(p->VmRssKiB());
  }
  for (size_t i = 0; i < processes_.size(); ++i) {
    std::cerr << processes_[i]->name() << ": VmRSS KiB";
    for (const auto& r : rss) std::cerr << " " << r[i];
    std::cerr << "\n";
    EXPECT_GT(idle_rss[i], 0);
    EXPECT_LT(rss.back()[i], idle_rss[i] + kRssToleranceKiB) << processes_[i]->name();
  }

  // ---- SIGTERM: every process drains and exits 0.
  for (const auto& p : processes_) ASSERT_EQ(kill(p->pid(), SIGTERM), 0);
  const absl::Time term = absl::Now();
  for (const auto& p : processes_) {
    auto code = p->WaitExit(absl::Seconds(30) - (absl::Now() - term));
    ASSERT_TRUE(code.ok()) << code.status();
    EXPECT_EQ(*code, 0) << p->name();
  }
  std::cerr << "total " << absl::FormatDuration(absl::Now() - start) << "\n";
}

}  // namespace
}  // namespace jamba
