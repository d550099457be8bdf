#include "layer-worker/stage_runner.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/status/status.h"
#include "common/check.h"
#include "kernels/cpu_threads.h"

namespace jamba {

StageRunner::StageRunner(Stage* stage, ExpertDispatcher* experts)
    : stage_(stage), experts_(experts) {
  compute_ = std::thread([this] { ComputeLoop(); });
}

StageRunner::~StageRunner() {
  std::vector<std::thread> waiters;
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  compute_.join();
  {
    absl::MutexLock lock(&mu_);
    waiters = std::move(waiters_);
  }
  for (std::thread& t : waiters) t.join();
}

void StageRunner::Submit(std::vector<StageItem> items, StageInput input, Done done) {
  auto job = std::make_unique<Job>();
  job->items = std::move(items);
  job->input = input;
  job->done = std::move(done);
  absl::MutexLock lock(&mu_);
  JAMBA_CHECK_MSG(!stop_, "StageRunner::Submit after destruction began");
  job->order = next_order_++;
  ++jobs_;
  PushRunnable(std::move(job));
}

absl::StatusOr<StageOutput> StageRunner::Forward(std::vector<StageItem> items, StageInput input) {
  absl::Mutex mu;
  bool finished = false;
  absl::StatusOr<StageOutput> result;
  Submit(std::move(items), input, [&](absl::StatusOr<StageOutput> r) {
    absl::MutexLock lock(&mu);
    result = std::move(r);
    finished = true;
  });
  absl::MutexLock lock(&mu);
  mu.Await(absl::Condition(&finished));
  return result;
}

int64_t StageRunner::max_open() const {
  absl::MutexLock lock(&mu_);
  return max_open_;
}

double StageRunner::busy_seconds() const {
  absl::MutexLock lock(&mu_);
  return busy_seconds_;
}

void StageRunner::PushRunnable(std::unique_ptr<Job> job) {
  auto at = std::upper_bound(
      runnable_.begin(), runnable_.end(), job->order,
      [](int64_t order, const std::unique_ptr<Job>& j) { return order < j->order; });
  runnable_.insert(at, std::move(job));
}

std::optional<absl::StatusOr<StageOutput>> StageRunner::Step(Job& job) {
  if (job.pass == nullptr) {
    absl::StatusOr<std::unique_ptr<StagePass>> pass = stage_->Begin(job.items, job.input);
    if (!pass.ok()) return absl::StatusOr<StageOutput>(pass.status());
    job.pass = *std::move(pass);
  }
  absl::StatusOr<bool> done = stage_->Advance(*job.pass);
  if (!done.ok()) return absl::StatusOr<StageOutput>(done.status());
  if (!*done) {
    if (experts_ == nullptr) {
      stage_->Abort(*job.pass);
      return absl::StatusOr<StageOutput>(
          absl::FailedPreconditionError("an MoE layer needs experts and no dispatcher is set"));
    }
    return std::nullopt;
  }
  return stage_->Finish(*job.pass);
}

void StageRunner::ComputeLoop() {
  AdoptCpuThreads();
  using Clock = std::chrono::steady_clock;
  while (true) {
    std::unique_ptr<Job> job;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !runnable_.empty() || (stop_ && jobs_ == 0);
      };
      mu_.Await(absl::Condition(&ready));
      if (runnable_.empty()) return;
      job = std::move(runnable_.front());
      runnable_.pop_front();
    }
    const Clock::time_point start = Clock::now();
    const bool begins = job->pass == nullptr;
    std::optional<absl::StatusOr<StageOutput>> result;
    {
      absl::MutexLock lock(&stage_mu_);
      result = Step(*job);
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    const bool began = begins && job->pass != nullptr;
    if (result.has_value()) {
      job->done(*std::move(result));
      absl::MutexLock lock(&mu_);
      busy_seconds_ += seconds;
      if (!begins) --open_;
      --jobs_;
      continue;
    }
    absl::MutexLock lock(&mu_);
    busy_seconds_ += seconds;
    if (began) max_open_ = std::max(max_open_, ++open_);
    waiting_.push_back(std::move(job));
    const int free_waiters = static_cast<int>(waiters_.size()) - busy_waiters_;
    if (free_waiters < static_cast<int>(waiting_.size())) {
      waiters_.emplace_back([this] { WaiterLoop(); });
    }
  }
}

void StageRunner::WaiterLoop() {
  while (true) {
    std::unique_ptr<Job> job;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !waiting_.empty() || (stop_ && jobs_ == 0);
      };
      mu_.Await(absl::Condition(&ready));
      if (waiting_.empty()) return;
      job = std::move(waiting_.front());
      waiting_.pop_front();
      ++busy_waiters_;
    }
    // The expert work's buffers belong to the pass, which no other thread touches until the
    // job is runnable again.
    absl::Status computed = experts_->Compute(job->pass->expert_layer(), job->pass->expert_work());
    if (!computed.ok()) {
      {
        absl::MutexLock lock(&stage_mu_);
        stage_->Abort(*job->pass);
      }
      job->done(computed);
      absl::MutexLock lock(&mu_);
      --busy_waiters_;
      --open_;
      --jobs_;
      continue;
    }
    absl::MutexLock lock(&mu_);
    --busy_waiters_;
    PushRunnable(std::move(job));
  }
}

}  // namespace jamba
