#include "layer-worker/remote_experts.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "grpcpp/client_context.h"
#include "proto/wire/tensor_codec.h"
#include "rpc/channel.h"
#include "rpc/grpc_status.h"

namespace jamba {
namespace {

// Counts down the in-flight calls of one step.
class Latch {
 public:
  explicit Latch(int count) : count_(count) {}
  void CountDown() {
    std::lock_guard<std::mutex> lock(mu_);
    if (--count_ == 0) cv_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return count_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int count_;
};

bool Retryable(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s) || absl::IsCancelled(s) ||
         absl::IsResourceExhausted(s) || absl::IsAborted(s);
}

}  // namespace

absl::StatusOr<std::unique_ptr<RemoteExperts>> RemoteExperts::Connect(
    const std::vector<std::string>& addresses, const std::string& fingerprint, int64_t hidden_size,
    const RemoteExpertsOptions& options) {
  std::unique_ptr<RemoteExperts> r(new RemoteExperts(hidden_size, options));
  const absl::Time deadline = absl::Now() + options.connect_timeout;
  for (const std::string& address : addresses) {
    auto w = std::make_unique<Worker>();
    w->address = address;
    w->stub = v1::ExpertWorker::NewStub(MakeInternalChannel(address));
    grpc::ClientContext ctx;
    ctx.set_wait_for_ready(true);  // the worker may still be loading its weights
    ctx.set_deadline(absl::ToChronoTime(deadline));
    v1::ExpertShardInfoRequest request;
    v1::ExpertShardInfoResponse info;
    absl::Status s = FromGrpcStatus(w->stub->ShardInfo(&ctx, request, &info));
    if (absl::IsUnimplemented(s)) {  // it answers, but serves no ExpertWorker API
      return absl::FailedPreconditionError(
          absl::StrCat("expert worker ", address, " is not an expert worker: ", s.message()));
    }
    if (!s.ok()) {
      return absl::UnavailableError(
          absl::StrCat("expert worker ", address, ": ShardInfo failed: ", s.ToString()));
    }
    if (info.fingerprint() != fingerprint) {
      return absl::FailedPreconditionError(absl::StrCat(
          "expert worker ", address, " serves checkpoint ", info.fingerprint(),
          ", this layer worker ", fingerprint, ": every process must load the same model"));
    }
    const size_t index = r->workers_.size();
    for (const v1::ExpertKeyList& layer : info.layers()) {
      for (int32_t e : layer.experts()) {
        w->experts.emplace_back(layer.layer(), e);
        r->holders_[{layer.layer(), e}].push_back(index);
      }
    }
    std::sort(w->experts.begin(), w->experts.end());
    r->workers_.push_back(std::move(w));
  }
  absl::MutexLock lock(&r->mu_);
  r->down_until_.assign(r->workers_.size(), absl::InfinitePast());
  return r;
}

bool RemoteExperts::Holds(int64_t layer, int64_t expert) const {
  return holders_.count({layer, expert}) != 0;
}

bool RemoteExperts::IsDown(size_t worker, absl::Time now) const {
  absl::MutexLock lock(&mu_);
  return down_until_[worker] > now;
}

absl::Status RemoteExperts::Compute(int64_t layer, absl::Span<const ExpertWork> work) {
  std::vector<bool> done(work.size(), false);
  std::vector<bool> failed(workers_.size(), false);  // failed during this step
  absl::Status last_error;
  // Each round assigns every pending item to a live replica; a round's failed workers are
  // excluded from the next. At most one round per worker.
  for (size_t round = 0; round <= workers_.size(); ++round) {
    const absl::Time now = absl::Now();
    std::vector<std::vector<size_t>> assigned(workers_.size());
    std::vector<int64_t> load(workers_.size(), 0);
    const uint64_t rr = round_robin_.fetch_add(1, std::memory_order_relaxed);
    bool pending = false;
    for (size_t i = 0; i < work.size(); ++i) {
      if (done[i]) continue;
      pending = true;
      auto it = holders_.find({layer, work[i].expert});
      if (it == holders_.end()) {
        return absl::FailedPreconditionError(
            absl::StrCat("layer ", layer, ": no expert worker holds expert ", work[i].expert));
      }
      const std::vector<size_t>& hs = it->second;
      // Prefer replicas not marked down; a worker down for everyone is still tried when it
      // is the last one left (it may be back).
      size_t best = SIZE_MAX;
      for (int pass = 0; pass < 2 && best == SIZE_MAX; ++pass) {
        for (size_t j = 0; j < hs.size(); ++j) {
          const size_t w = hs[(j + rr + i) % hs.size()];
          if (failed[w] || (pass == 0 && IsDown(w, now))) continue;
          if (best == SIZE_MAX || load[w] < load[best]) best = w;
        }
      }
      if (best == SIZE_MAX) {
        return absl::UnavailableError(absl::StrCat(
            "layer ", layer, " expert ", work[i].expert,
            ": every expert worker holding it failed; last error: ", last_error.ToString()));
      }
      assigned[best].push_back(i);
      load[best] += work[i].rows;
    }
    if (!pending) return absl::OkStatus();
    std::vector<absl::Status> results = SendAll(layer, work, assigned);
    for (size_t w = 0; w < workers_.size(); ++w) {
      if (assigned[w].empty()) continue;
      if (results[w].ok()) {
        for (size_t i : assigned[w]) done[i] = true;
        continue;
      }
      if (!Retryable(results[w])) return results[w];
      failed[w] = true;
      last_error = results[w];
      absl::MutexLock lock(&mu_);
      down_until_[w] = absl::Now() + options_.down_time;
    }
  }
  return absl::UnavailableError(
      absl::StrCat("layer ", layer, ": expert workers failed: ", last_error.ToString()));
}

std::vector<absl::Status> RemoteExperts::SendAll(int64_t layer, absl::Span<const ExpertWork> work,
                                                 const std::vector<std::vector<size_t>>& assigned) {
  struct Call {
    grpc::ClientContext ctx;
    v1::ExpertRequest request;
    v1::ExpertResponse response;
    grpc::Status status;
  };
  const size_t n = workers_.size();
  std::vector<std::unique_ptr<Call>> calls(n);
  int in_flight = 0;
  for (size_t w = 0; w < n; ++w) {
    if (assigned[w].empty()) continue;
    calls[w] = std::make_unique<Call>();
    ++in_flight;
  }
  Latch latch(in_flight);
  const absl::Time start = absl::Now();
  const auto deadline = absl::ToChronoTime(absl::Now() + options_.call_timeout);
  for (size_t w = 0; w < n; ++w) {
    if (calls[w] == nullptr) continue;
    Call& call = *calls[w];
    int64_t rows = 0;
    for (size_t i : assigned[w]) {
      v1::ExpertBatch* b = call.request.add_batches();
      b->set_layer(static_cast<int32_t>(layer));
      b->set_expert(work[i].expert);
      EncodeF32(work[i].x, {work[i].rows, hidden_size_}, b->mutable_tokens());
      rows += work[i].rows;
    }
    call.ctx.set_deadline(deadline);
    workers_[w]->requests.fetch_add(1, std::memory_order_relaxed);
    workers_[w]->rows.fetch_add(rows, std::memory_order_relaxed);
    workers_[w]->stub->async()->Compute(&call.ctx, &call.request, &call.response,
                                        [&call, &latch](grpc::Status s) {
                                          call.status = std::move(s);
                                          latch.CountDown();
                                        });
  }
  latch.Wait();
  wait_micros_.fetch_add(absl::ToInt64Microseconds(absl::Now() - start), std::memory_order_relaxed);

  std::vector<absl::Status> results(n);
  for (size_t w = 0; w < n; ++w) {
    if (calls[w] == nullptr) continue;
    Call& call = *calls[w];
    absl::Status s = FromGrpcStatus(call.status);
    if (s.ok() && call.response.outputs_size() != static_cast<int>(assigned[w].size())) {
      s = absl::InternalError(absl::StrCat("answered ", call.response.outputs_size(),
                                           " outputs for ", assigned[w].size(), " batches"));
    }
    for (size_t k = 0; s.ok() && k < assigned[w].size(); ++k) {
      const ExpertWork& item = work[assigned[w][k]];
      absl::StatusOr<WireF32View> out =
          ViewF32(call.response.outputs(static_cast<int>(k)), 2, "outputs");
      if (!out.ok()) {
        s = out.status();
      } else if (out->shape[0] != item.rows || out->shape[1] != hidden_size_) {
        s = absl::InternalError(absl::StrCat("output for expert ", item.expert, " has shape [",
                                             out->shape[0], ", ", out->shape[1], "], expected [",
                                             item.rows, ", ", hidden_size_, "]"));
      } else {
        std::memcpy(item.y, out->data, static_cast<size_t>(item.rows * hidden_size_) * 4);
      }
    }
    if (!s.ok()) {
      workers_[w]->failures.fetch_add(1, std::memory_order_relaxed);
      s = absl::Status(s.code(), absl::StrCat("expert worker ", workers_[w]->address,
                                              ": Compute: ", s.message()));
    }
    results[w] = std::move(s);
  }
  return results;
}

std::vector<ExpertWorkerStats> RemoteExperts::Stats() const {
  std::vector<ExpertWorkerStats> out;
  for (const auto& w : workers_) {
    out.push_back(ExpertWorkerStats{w->address, w->experts, w->requests.load(), w->rows.load(),
                                    w->failures.load()});
  }
  return out;
}

}  // namespace jamba
