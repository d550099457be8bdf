// Replays every committed corpus input (tests/fuzz/corpus/<target>/) through the same entry
// functions the libFuzzer binaries use. Inputs that once crashed are kept there, so this is the
// regression test for every fuzzer finding; tools/fuzz_replay_asan.sh runs it under ASan/UBSan.
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/fuzz/fuzz_targets.h"

#if defined(__SANITIZE_ADDRESS__)
#define JAMBA_HAVE_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define JAMBA_HAVE_SANITIZER 1
#endif
#endif
#ifdef JAMBA_HAVE_SANITIZER
#include <sanitizer/common_interface_defs.h>
#endif

namespace jamba {
namespace {

const std::string kCorpus = std::string(JAMBA_SOURCE_DIR) + "/tests/fuzz/corpus";

// The input being replayed, printed if the process dies (sanitizer report, abort, segfault),
// since a crash ends the test before any assertion could name it.
char g_current[4096] = "";

void PrintCurrent() {
  const char prefix[] = "\nfuzz_replay_test: crashed while replaying ";
  (void)!::write(2, prefix, sizeof(prefix) - 1);
  (void)!::write(2, g_current, std::strlen(g_current));
  (void)!::write(2, "\n", 1);
}

void OnSignal(int sig) {
  PrintCurrent();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

void InstallCrashReporting() {
  static bool installed = false;
  if (installed) return;
  installed = true;
#ifdef JAMBA_HAVE_SANITIZER
  __sanitizer_set_death_callback(PrintCurrent);
#endif
  for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) std::signal(sig, OnSignal);
}

std::vector<std::string> CorpusFiles(const std::string& target) {
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(kCorpus + "/" + target)) {
    if (entry.is_regular_file()) files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void Replay(const std::string& target, void (*entry)(const uint8_t*, size_t)) {
  InstallCrashReporting();
  const std::vector<std::string> files = CorpusFiles(target);
  ASSERT_FALSE(files.empty()) << "no corpus in " << kCorpus << "/" << target;
  for (const std::string& path : files) {
    std::snprintf(g_current, sizeof(g_current), "%s", path.c_str());
    const std::string bytes = ReadFile(path);
    // A copy in its own allocation, so ASan sees reads past its end exactly.
    std::vector<uint8_t> input(bytes.begin(), bytes.end());
    entry(input.data(), input.size());
  }
  g_current[0] = '\0';
  std::printf("replayed %zu %s inputs\n", files.size(), target.c_str());
}

TEST(FuzzReplayTest, Safetensors) { Replay("safetensors", FuzzSafetensors); }
TEST(FuzzReplayTest, Config) { Replay("config", FuzzConfig); }

}  // namespace
}  // namespace jamba
