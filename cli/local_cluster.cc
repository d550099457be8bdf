#include "cli/local_cluster.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/client.h"
#include "common/status_macros.h"

namespace jamba {
namespace {

namespace fs = std::filesystem;

// The server binaries: next to this executable (an install), or in the build tree's sibling
// folders (build/cli/jambactl, build/gateway/jamba-gateway, ...).
std::string FindBinary(const std::string& bin_dir, const std::string& name,
                       const std::string& build_subdir) {
  std::vector<fs::path> candidates;
  if (!bin_dir.empty()) {
    candidates.push_back(fs::path(bin_dir) / name);
  } else {
    std::error_code ec;
    const fs::path self = fs::read_symlink("/proc/self/exe", ec).parent_path();
    candidates.push_back(self / name);
    candidates.push_back(self / ".." / build_subdir / name);
  }
  for (const fs::path& p : candidates) {
    if (access(p.c_str(), X_OK) == 0) return fs::weakly_canonical(p).string();
  }
  return "";
}

absl::Status WaitHealthy(const std::string& name, const std::string& address,
                         absl::Duration timeout) {
  client::ClientOptions o;
  o.deadline = timeout;
  o.max_attempts = 20;
  JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<client::Client> c, client::Client::Connect(address, o));
  absl::StatusOr<client::ServingStatus> s = c->Health();
  if (!s.ok()) return absl::UnavailableError(absl::StrCat(name, ": ", s.status().message()));
  if (*s != client::ServingStatus::kServing) {
    return absl::UnavailableError(
        absl::StrCat(name, " at ", address, " is ", client::ServingStatusName(*s)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<LocalCluster>> LocalCluster::Start(const LocalClusterOptions& o) {
  const std::string gateway_bin = FindBinary(o.bin_dir, "jamba-gateway", "gateway");
  const std::string layer_bin = FindBinary(o.bin_dir, "jamba-layer-worker", "layer-worker");
  const std::string expert_bin = FindBinary(o.bin_dir, "jamba-expert-worker", "expert-worker");
  if (gateway_bin.empty() || layer_bin.empty() || expert_bin.empty()) {
    return absl::NotFoundError(
        "cannot find jamba-gateway, jamba-layer-worker and jamba-expert-worker; pass --bin-dir");
  }
  std::unique_ptr<LocalCluster> c(new LocalCluster());
  const std::string listen_any = absl::StrCat(o.host, ":0");
  auto with_common = [&](std::vector<std::string> argv, const std::string& device) {
    for (const std::string& a :
         {std::string("--model"), o.model, std::string("--weights"), o.weights,
          std::string("--device"), device, std::string("--matmul-precision"), o.matmul_precision,
          std::string("--threads"), std::to_string(o.threads), std::string("--grace-s"),
          std::to_string(o.grace_s)}) {
      argv.push_back(a);
    }
    return argv;
  };
  for (size_t i = 0; i < o.plan.expert_specs.size(); ++i) {
    JAMBA_ASSIGN_OR_RETURN(std::string a,
                           c->Launch(absl::StrCat("expert-", i),
                                     with_common({expert_bin, "--experts", o.plan.expert_specs[i],
                                                  "--listen", listen_any},
                                                 o.plan.expert_devices[i]),
                                     o.start_timeout));
    c->experts_.push_back(a);
  }
  const size_t stages = o.plan.layer_ranges.size();
  for (int32_t p = 0; p < o.plan.pipelines; ++p) {
    c->pipelines_.emplace_back();
    for (size_t i = 0; i < stages; ++i) {
      std::vector<std::string> argv = with_common(
          {layer_bin, "--layers",
           absl::StrCat(o.plan.layer_ranges[i].first, ":", o.plan.layer_ranges[i].second),
           "--listen", listen_any, "--max-sequences", std::to_string(o.max_sequences),
           "--micro-batches", std::to_string(o.micro_batches)},
          o.plan.layer_devices[p * stages + i]);
      if (!c->experts_.empty()) {
        argv.push_back("--expert-workers");
        argv.push_back(absl::StrJoin(c->experts_, ","));
      }
      const std::string name =
          o.plan.pipelines == 1 ? absl::StrCat("layer-", i) : absl::StrCat("layer-", p, ".", i);
      JAMBA_ASSIGN_OR_RETURN(std::string a, c->Launch(name, argv, o.start_timeout));
      c->layers_.push_back(a);
      c->pipelines_.back().push_back(a);
    }
  }
  std::vector<std::string> gateway_argv = {gateway_bin,
                                           "--model",
                                           o.model,
                                           "--layer-workers",
                                           absl::StrJoin(c->pipelines_[0], ","),
                                           "--listen",
                                           absl::StrCat(o.host, ":", o.port),
                                           "--max-running",
                                           std::to_string(o.max_running),
                                           "--pipeline-depth",
                                           std::to_string(o.pipeline_depth),
                                           "--grace-s",
                                           std::to_string(o.grace_s)};
  for (size_t p = 1; p < c->pipelines_.size(); ++p) {
    gateway_argv.push_back("--pipeline");
    gateway_argv.push_back(absl::StrJoin(c->pipelines_[p], ","));
  }
  JAMBA_ASSIGN_OR_RETURN(c->gateway_, c->Launch("gateway", gateway_argv, o.start_timeout));
  return c;
}

LocalCluster::~LocalCluster() { Stop(absl::Seconds(5)); }

absl::StatusOr<std::string> LocalCluster::Launch(const std::string& name,
                                                 const std::vector<std::string>& argv,
                                                 absl::Duration timeout) {
  // The processes share this machine's cores, and a pipeline keeps most of them waiting on
  // another at any moment: OpenMP threads that spin while waiting would take the cores from
  // the process that has work (measured: batch-1 decode step 40 ms spinning vs 26 ms passive
  // on the benchmark's 282M model, 2 cores). An explicit setting in our environment wins.
  std::vector<std::string> env;
  if (getenv("OMP_WAIT_POLICY") == nullptr) env.push_back("OMP_WAIT_POLICY=PASSIVE");
  JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<ChildProcess> child, ChildProcess::Start(name, argv, env));
  ChildProcess* p = child.get();
  children_.push_back(std::move(child));
  JAMBA_ASSIGN_OR_RETURN(std::string address, p->WaitListening(timeout));
  JAMBA_RETURN_IF_ERROR(WaitHealthy(name, address, timeout));
  return address;
}

std::vector<pid_t> LocalCluster::pids() const {
  std::vector<pid_t> out;
  for (const auto& c : children_) out.push_back(c->pid());
  return out;
}

const ChildProcess* LocalCluster::Dead() {
  for (const auto& c : children_) {
    if (c->Exited()) return c.get();
  }
  return nullptr;
}

bool LocalCluster::Stop(absl::Duration grace) {
  bool clean = true;
  for (auto it = children_.rbegin(); it != children_.rend(); ++it) {
    const int status = (*it)->Stop(SIGTERM, grace);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::cerr << (*it)->name() << " exited with status "
                << (WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)) << "\n";
      clean = false;
    }
  }
  children_.clear();
  return clean;
}

}  // namespace jamba
