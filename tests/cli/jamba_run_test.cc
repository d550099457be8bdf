// jamba-run as a user runs it: a real process, its stdout/stderr and exit status.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/engine/runtime/reference_fixture.h"

namespace jamba {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

struct RunResult {
  int exit_code = -1;  // -1: killed by a signal
  std::string out, err;
};

RunResult RunJambaRun(const std::string& args) {
  // ctest runs the tests of this file as parallel processes: every run gets its own file.
  static int counter = 0;
  const fs::path dir = fs::path(::testing::TempDir()) / "jamba_run_test";
  fs::create_directories(dir);
  const std::string err_path =
      (dir / absl::StrCat("stderr_", getpid(), "_", counter++, ".txt")).string();
  const std::string cmd = absl::StrCat(JAMBA_BINARY_DIR, "/cli/jamba-run ", args, " 2>",
                                       err_path);
  RunResult r;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) r.out.append(buf, n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream err(err_path);
  r.err.assign(std::istreambuf_iterator<char>(err), std::istreambuf_iterator<char>());
  return r;
}

std::string Ids(const std::vector<int32_t>& ids) { return absl::StrJoin(ids, ","); }

TEST(JambaRunTest, GreedyJsonMatchesTransformers) {
  auto ref = LoadModelReference("jamba_auto_dtrank");
  ASSERT_TRUE(ref.ok()) << ref.status();
  RunResult r = RunJambaRun(absl::StrCat("--model ", ModelFixtureDir("jamba_auto_dtrank"),
                                         " --token-ids ", Ids(ref->prompt),
                                         " --max-new-tokens 32 --temperature 0 --ignore-eos "
                                         "--json --quiet"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_EQ(j["token_ids"].get<std::vector<int32_t>>(), ref->greedy);
  EXPECT_EQ(j["finish_reason"], "length");
  EXPECT_EQ(j["text"], "");  // no tokenizer in the fixture
  EXPECT_EQ(j["usage"]["prompt_tokens"], ref->prompt.size());
}

TEST(JambaRunTest, DumpLogitsWritesNpyOfEveryPromptPosition) {
  auto ref = LoadModelReference("mamba");
  ASSERT_TRUE(ref.ok()) << ref.status();
  const std::string npy =
      (fs::path(::testing::TempDir()) / absl::StrCat("logits_", getpid(), ".npy")).string();
  RunResult r = RunJambaRun(absl::StrCat("--model ", ModelFixtureDir("mamba"), " --token-ids ",
                                         Ids(ref->prompt), " --max-new-tokens 1 --json --quiet "
                                         "--prefill-chunk 3 --dump-logits ", npy));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::ifstream in(npy, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(data.size(), 10u);
  ASSERT_EQ(data.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const size_t header_len = static_cast<uint8_t>(data[8]) | static_cast<uint8_t>(data[9]) << 8;
  const std::string header = data.substr(10, header_len);
  EXPECT_THAT(header, HasSubstr("'descr': '<f4'"));
  EXPECT_THAT(header, HasSubstr(absl::StrCat("'shape': (", ref->prompt.size(), ", ",
                                             ref->vocab, ")")));
  EXPECT_EQ((10 + header_len) % 64, 0u);
  ASSERT_EQ(data.size() - 10 - header_len, ref->logits.size() * sizeof(float));
  std::vector<float> logits(ref->logits.size());
  std::memcpy(logits.data(), data.data() + 10 + header_len, logits.size() * sizeof(float));
  EXPECT_LE(MaxAbsDiff(logits.data(), ref->logits.data(), logits.size()), 1e-4);
}

TEST(JambaRunTest, BadInputGivesMessageAndNonZeroExit) {
  const std::string model = ModelFixtureDir("mixtral");
  struct Case {
    std::string args;
    int exit_code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"--model " + model + " --token-ids 1,2,999", 1, "token id 999"},
      {"--model " + model + " --token-ids 1,x", 2, "--token-ids: 'x'"},
      {"--model " + model + " --token-ids 1 --top-p 1.5", 1, "top_p"},
      {"--model " + model + " --token-ids 1 --temperature -1", 1, "temperature"},
      {"--model " + model + " --token-ids 1 --max-new-tokens 0", 1, "max_new_tokens"},
      {"--model " + model + " --token-ids 1 --weights f8", 2, "--weights"},
      {"--model " + model + " --prompt hello", 1, "tokenizer.json"},
      {"--model " + model, 2, "--prompt"},
      {"--token-ids 1", 2, "--model"},
      {"--model /nonexistent/dir --token-ids 1", 1, "/nonexistent/dir/config.json"},
      {"--model " + model + " --token-ids 1 --frobnicate", 2, "unknown flag --frobnicate"},
      {"--model " + model + " --token-ids 1 --device gpu", 2, "--device: unknown device 'gpu'"},
      {"--model " + model + " --token-ids 1 --device cuda:x", 2, "expected cpu, cuda or cuda:N"},
      {"--model " + model + " --token-ids 1 --matmul-precision fp8", 2,
       "--matmul-precision: unknown matmul precision 'fp8': expected f32 or bf16"},
  };
  for (const Case& c : cases) {
    RunResult r = RunJambaRun(c.args);
    EXPECT_EQ(r.exit_code, c.exit_code) << c.args << "\n" << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.message)) << c.args;
  }
}

// --device cuda without a usable GPU (or in a build without CUDA) is an error that says so,
// not a crash or a silent fallback to the CPU; with a GPU it must give the CPU's tokens.
TEST(JambaRunTest, CudaDeviceRunsOrSaysWhyNot) {
  const std::string model = ModelFixtureDir("mixtral");
  RunResult cpu = RunJambaRun("--model " + model + " --token-ids 1,2,3 --max-new-tokens 4 --json");
  ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
  RunResult gpu = RunJambaRun("--model " + model +
                              " --token-ids 1,2,3 --max-new-tokens 4 --json --device cuda");
  if (gpu.exit_code == 1) {
    EXPECT_THAT(gpu.err, ::testing::AnyOf(HasSubstr("no CUDA backend"), HasSubstr("CUDA device")))
        << gpu.err;
    return;
  }
  ASSERT_EQ(gpu.exit_code, 0) << gpu.err;
  EXPECT_EQ(nlohmann::json::parse(gpu.out)["token_ids"], nlohmann::json::parse(cpu.out)["token_ids"]);
}

TEST(JambaRunTest, TruncatedCheckpointIsAnErrorNamingTheFile) {
  const fs::path dir =
      fs::path(::testing::TempDir()) / absl::StrCat("truncated_model_", getpid());
  fs::remove_all(dir);
  fs::copy(ModelFixtureDir("jamba_moe_gqa"), dir);
  const fs::path weights = dir / "model.safetensors";
  fs::resize_file(weights, fs::file_size(weights) / 2);
  RunResult r = RunJambaRun(absl::StrCat("--model ", dir.string(), " --token-ids 1,2"));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("model.safetensors"));
}

TEST(JambaRunTest, DemoModelStreamsTextAndHonoursStopStrings) {
  const std::string model = std::string(JAMBA_SOURCE_DIR) + "/models/jamba-demo";
  RunResult r = RunJambaRun("--model " + model +
                            " --prompt 'In the beginning' --max-new-tokens 24 --temperature 0 "
                            "--json --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  const std::string text = j["text"];
  ASSERT_GE(text.size(), 4u);
  // Stop at the first space after the first character: the output is that text's prefix.
  const size_t space = text.find(' ', 1);
  ASSERT_NE(space, std::string::npos) << text;
  RunResult s = RunJambaRun("--model " + model +
                            " --prompt 'In the beginning' --max-new-tokens 24 --temperature 0 "
                            "--json --quiet --stop ' '");
  ASSERT_EQ(s.exit_code, 0) << s.err;
  nlohmann::json js = nlohmann::json::parse(s.out, nullptr, false);
  ASSERT_FALSE(js.is_discarded());
  if (text[0] == ' ') {
    EXPECT_EQ(js["text"], "");
  } else {
    EXPECT_EQ(js["text"], text.substr(0, text.find(' ')));
  }
  EXPECT_EQ(js["finish_reason"], "stop");
}

TEST(JambaRunTest, HelpDocumentsEveryFlag) {
  RunResult r = RunJambaRun("--help");
  ASSERT_EQ(r.exit_code, 0);
  for (const char* flag :
       {"--model", "--prompt", "--token-ids", "--max-new-tokens", "--temperature", "--top-k",
        "--top-p", "--seed", "--repetition-penalty", "--stop-token-ids", "--stop", "--logprobs",
        "--prompt-logprobs", "--json", "--dump-logits", "--weights", "--threads"}) {
    EXPECT_THAT(r.out, HasSubstr(flag));
  }
}

}  // namespace
}  // namespace jamba
