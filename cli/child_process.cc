#include "cli/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace jamba {

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(
    const std::string& name, const std::vector<std::string>& argv,
    const std::vector<std::string>& env) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  // Everything the child needs is prepared before fork: only async-signal-safe calls after.
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    const std::string key = entry.substr(0, entry.find('='));
    bool overridden = false;
    for (const std::string& x : env) overridden = overridden || x.rfind(key + "=", 0) == 0;
    if (!overridden) env_strings.push_back(entry);
  }
  env_strings.insert(env_strings.end(), env.begin(), env.end());
  std::vector<char*> envp;
  for (const std::string& e : env_strings) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);  // the parent died before prctl took effect
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    execve(args[0], args.data(), envp.data());
    const char msg[] = "exec failed\n";
    (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
    _exit(127);
  }
  close(fds[1]);
  std::unique_ptr<ChildProcess> child(new ChildProcess());
  child->name_ = name;
  child->pid_ = pid;
  const int fd = fds[0];
  ChildProcess* self = child.get();
  child->reader_ = std::thread([self, fd] { self->ReadOutput(fd); });
  return child;
}

ChildProcess::~ChildProcess() {
  if (!Exited()) Stop(SIGKILL, absl::Seconds(5));
  if (reader_.joinable()) reader_.join();
}

void ChildProcess::ReadOutput(int fd) {
  FILE* in = fdopen(fd, "r");
  char* line = nullptr;
  size_t cap = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, in)) > 0) {
    absl::string_view text(line, static_cast<size_t>(n));
    absl::ConsumeSuffix(&text, "\n");
    std::cerr << "[" << name_ << "] " << text << "\n";
    if (absl::StartsWith(text, "listening on ")) {
      absl::MutexLock lock(&mu_);
      listening_ = std::string(absl::StripPrefix(text, "listening on "));
    }
  }
  free(line);
  fclose(in);
  absl::MutexLock lock(&mu_);
  eof_ = true;
}

absl::StatusOr<std::string> ChildProcess::WaitListening(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !listening_.empty() || eof_; };
  if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) {
    return absl::DeadlineExceededError(
        absl::StrCat(name_, " did not start serving within ", absl::FormatDuration(timeout)));
  }
  if (listening_.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(name_, " exited before serving (its output is above)"));
  }
  return listening_;
}

bool ChildProcess::Exited(int* status) {
  if (!reaped_) {
    int s = 0;
    if (waitpid(pid_, &s, WNOHANG) == pid_) {
      reaped_ = true;
      wait_status_ = s;
    }
  }
  if (reaped_ && status != nullptr) *status = wait_status_;
  return reaped_;
}

int ChildProcess::Stop(int sig, absl::Duration timeout) {
  if (Exited()) return wait_status_;
  kill(pid_, sig);
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (Exited()) return wait_status_;
    absl::SleepFor(absl::Milliseconds(20));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, &wait_status_, 0);
  reaped_ = true;
  return wait_status_;
}

}  // namespace jamba
