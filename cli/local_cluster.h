// A cluster of real processes on this machine: expert workers, layer workers and the gateway
// started in that order from a ClusterPlan, each waited for until it serves and answers
// grpc.health.v1 with SERVING. Used by `jambactl cluster up` and the cluster benchmark.
#ifndef JAMBA_CLI_LOCAL_CLUSTER_H_
#define JAMBA_CLI_LOCAL_CLUSTER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cli/child_process.h"
#include "cli/cluster_plan.h"

namespace jamba {

struct LocalClusterOptions {
  std::string model;
  ClusterPlan plan;  // with each worker's device (AssignDevices)
  std::string host = "127.0.0.1";
  int32_t port = 0;  // gateway; 0: a free one
  std::string weights = "f32";
  std::string matmul_precision = "f32";  // the workers' --matmul-precision
  int32_t threads = 0;                   // per process; 0: all cores
  int32_t max_running = 16;
  int32_t max_sequences = 16;
  int32_t pipeline_depth = 0;  // the gateway's --pipeline-depth (0: its default)
  int32_t micro_batches = 1;   // the layer workers' --micro-batches
  int32_t grace_s = 30;
  absl::Duration start_timeout = absl::Seconds(300);
  // Folder with the server binaries; empty: next to this executable or in its build tree.
  std::string bin_dir;
};

class LocalCluster {
 public:
  // Starts every process; on failure stops those already started and names the culprit.
  static absl::StatusOr<std::unique_ptr<LocalCluster>> Start(const LocalClusterOptions& options);
  ~LocalCluster();  // Stop() if not stopped yet

  const std::string& gateway() const { return gateway_; }
  const std::vector<std::string>& layer_workers() const { return layers_; }  // all pipelines
  const std::vector<std::vector<std::string>>& pipelines() const { return pipelines_; }
  const std::vector<std::string>& expert_workers() const { return experts_; }
  std::vector<pid_t> pids() const;

  // A process that exited on its own (crashed), if any.
  const ChildProcess* Dead();
  // SIGTERM in reverse start order (the gateway drains first), each given `grace`; false if
  // some process did not exit with status 0.
  bool Stop(absl::Duration grace);

 private:
  LocalCluster() = default;
  absl::StatusOr<std::string> Launch(const std::string& name, const std::vector<std::string>& argv,
                                     absl::Duration timeout);

  std::vector<std::unique_ptr<ChildProcess>> children_;  // in start order
  std::string gateway_;
  std::vector<std::string> layers_, experts_;
  std::vector<std::vector<std::string>> pipelines_;  // layers_, by pipeline
};

}  // namespace jamba

#endif  // JAMBA_CLI_LOCAL_CLUSTER_H_
