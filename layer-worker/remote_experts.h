// The layer worker's side of expert parallelism: an ExpertDispatcher that sends each MoE layer
// step's routed tokens to the expert workers holding those experts - one request per worker
// per layer step, all in flight at once - and waits for every answer.
//
// Placement comes from the workers themselves: at connection each expert worker reports (in
// ShardInfo) the checkpoint fingerprint and the (layer, expert) pairs it holds, so the
// cluster configuration is the list of expert worker addresses and what each was started
// with. An expert held by several workers (replicas) has its requests spread over them by the
// rows already assigned in the step, ties broken round-robin. A worker that fails a request
// (unreachable, timed out) is skipped for `down_time` and its share of the step is retried
// on the remaining replicas; the step fails only when some expert has no replica left.
#ifndef JAMBA_LAYER_WORKER_REMOTE_EXPERTS_H_
#define JAMBA_LAYER_WORKER_REMOTE_EXPERTS_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/model/blocks/expert_dispatcher.h"
#include "jamba/v1/expert_worker.grpc.pb.h"

namespace jamba {

struct RemoteExpertsOptions {
  // How long Connect waits for every worker to answer ShardInfo (workers may still be loading).
  absl::Duration connect_timeout = absl::Seconds(120);
  absl::Duration call_timeout = absl::Seconds(30);  // one Compute request
  absl::Duration down_time = absl::Seconds(2);      // a failed worker is skipped this long
};

struct ExpertWorkerStats {
  std::string address;
  std::vector<std::pair<int32_t, int32_t>> experts;  // (layer, expert) held, sorted
  int64_t requests = 0;                              // Compute calls sent
  int64_t rows = 0;                                  // token rows sent
  int64_t failures = 0;                              // calls that failed
};

class RemoteExperts final : public ExpertDispatcher {
 public:
  // Connects to every address and learns what it holds. Errors: Unavailable when a worker does
  // not answer within connect_timeout, FailedPrecondition when one serves another checkpoint
  // (fingerprint mismatch) or is not an expert worker.
  static absl::StatusOr<std::unique_ptr<RemoteExperts>> Connect(
      const std::vector<std::string>& addresses, const std::string& fingerprint,
      int64_t hidden_size, const RemoteExpertsOptions& options);

  // Whether some worker holds expert `expert` of MoE layer `layer`.
  bool Holds(int64_t layer, int64_t expert) const;

  absl::Status Compute(int64_t layer, absl::Span<const ExpertWork> work) override;

  std::vector<ExpertWorkerStats> Stats() const;
  // Total time Compute has spent waiting on expert workers.
  int64_t wait_micros() const { return wait_micros_.load(std::memory_order_relaxed); }

 private:
  struct Worker {
    std::string address;
    std::unique_ptr<v1::ExpertWorker::Stub> stub;
    std::vector<std::pair<int32_t, int32_t>> experts;
    std::atomic<int64_t> requests{0}, rows{0}, failures{0};
  };

  RemoteExperts(int64_t hidden_size, const RemoteExpertsOptions& options)
      : hidden_size_(hidden_size), options_(options) {}

  // Sends `assigned[w]` (indices into work) to each worker w in parallel; returns the status
  // of each worker's call (OK for workers with nothing assigned).
  std::vector<absl::Status> SendAll(int64_t layer, absl::Span<const ExpertWork> work,
                                    const std::vector<std::vector<size_t>>& assigned);
  bool IsDown(size_t worker, absl::Time now) const;

  const int64_t hidden_size_;
  const RemoteExpertsOptions options_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::map<std::pair<int64_t, int64_t>, std::vector<size_t>> holders_;  // (layer, expert)
  std::atomic<uint64_t> round_robin_{0};
  std::atomic<int64_t> wait_micros_{0};
  mutable absl::Mutex mu_;
  std::vector<absl::Time> down_until_ ABSL_GUARDED_BY(mu_);
};

}  // namespace jamba

#endif  // JAMBA_LAYER_WORKER_REMOTE_EXPERTS_H_
