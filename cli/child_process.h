// A child process of `jambactl cluster up`: started with its stdout and stderr on a pipe that
// a thread reads line by line, forwarding each line to our stderr prefixed with the child's
// name and watching for the "listening on HOST:PORT" line every server prints when ready.
// The child gets SIGTERM if jambactl dies (PR_SET_PDEATHSIG), so a killed jambactl does not
// leave a cluster behind.
#ifndef JAMBA_CLI_CHILD_PROCESS_H_
#define JAMBA_CLI_CHILD_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace jamba {

class ChildProcess {
 public:
  // Starts argv[0] (a path) with the given arguments; `env` entries ("KEY=VALUE") are added to
  // (or override) the inherited environment.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(
      const std::string& name, const std::vector<std::string>& argv,
      const std::vector<std::string>& env = {});
  ~ChildProcess();  // kills a still-running child

  const std::string& name() const { return name_; }
  pid_t pid() const { return pid_; }

  // The address from the child's "listening on" line. DeadlineExceeded after `timeout`;
  // FailedPrecondition if the child exited first.
  absl::StatusOr<std::string> WaitListening(absl::Duration timeout);
  // Whether the child has exited (reaps it); `status` gets its wait status.
  bool Exited(int* status = nullptr);
  // Sends `sig`, then waits up to `timeout` for the exit; SIGKILL after that. Returns the
  // wait status.
  int Stop(int sig, absl::Duration timeout);

 private:
  ChildProcess() = default;
  void ReadOutput(int fd);

  std::string name_;
  pid_t pid_ = -1;
  bool reaped_ = false;
  int wait_status_ = 0;
  std::thread reader_;
  absl::Mutex mu_;
  std::string listening_ ABSL_GUARDED_BY(mu_);
  bool eof_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace jamba

#endif  // JAMBA_CLI_CHILD_PROCESS_H_
