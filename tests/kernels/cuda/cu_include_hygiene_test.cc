// Project rule: nvcc-compiled files (.cu) reach no abseil, gRPC or protobuf header, directly or
// through project headers (abseil in nvcc is fragile). Follows the quoted includes of every .cu
// and .cuh file under kernels/ through the source tree. Needs no GPU.
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace jamba {
namespace {

namespace fs = std::filesystem;

bool Forbidden(const std::string& include) {
  for (const char* prefix : {"absl/", "grpc", "google/protobuf/"}) {
    if (include.rfind(prefix, 0) == 0) return true;
  }
  return include.find(".pb.h") != std::string::npos;
}

// Every include (quoted or angled) reached from `file`, following quoted includes that exist
// in the source tree; `chain` records how each forbidden one was reached.
void Collect(const fs::path& root, const fs::path& file, std::set<std::string>* seen,
             std::vector<std::string>* violations, const std::string& chain) {
  std::ifstream in(file);
  ASSERT_TRUE(in.good()) << file;
  static const std::regex kInclude(R"re(^\s*#\s*include\s*([<"])([^>"]+)[>"])re");
  std::string line;
  std::smatch m;
  while (std::getline(in, line)) {
    if (!std::regex_search(line, m, kInclude)) continue;
    const std::string inc = m[2];
    const std::string here = chain + " -> " + inc;
    if (Forbidden(inc)) violations->push_back(here);
    if (m[1] != "\"" || !seen->insert(inc).second) continue;
    const fs::path local = root / inc;
    if (fs::exists(local)) Collect(root, local, seen, violations, here);
  }
}

TEST(CuIncludeHygieneTest, CuFilesReachNoAbseilGrpcOrProtobuf) {
  const fs::path root = JAMBA_SOURCE_DIR;
  int files = 0;
  for (const auto& entry : fs::recursive_directory_iterator(root / "kernels")) {
    const std::string ext = entry.path().extension().string();
    if (ext != ".cu" && ext != ".cuh") continue;
    ++files;
    std::set<std::string> seen;
    std::vector<std::string> violations;
    const std::string name = fs::relative(entry.path(), root).string();
    Collect(root, entry.path(), &seen, &violations, name);
    for (const std::string& v : violations) ADD_FAILURE() << "forbidden include: " << v;
  }
  EXPECT_GT(files, 0) << "no .cu files found under " << root / "kernels";
}

}  // namespace
}  // namespace jamba
