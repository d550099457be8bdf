// CreateBackend's device names, in builds with and without CUDA, on machines with and
// without a GPU.
#include "kernels/backend_factory.h"

#include "gtest/gtest.h"

namespace jamba {
namespace {

TEST(BackendFactoryTest, CpuAlwaysWorks) {
  absl::StatusOr<std::unique_ptr<Backend>> b = CreateBackend("cpu");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)->device(), Device::kCpu);
}

TEST(BackendFactoryTest, MalformedNamesAreInvalidArgument) {
  for (const char* spec : {"", "gpu", "CPU", "cuda:", "cuda:x", "cuda:-1", "cuda0", "cuda:1:2"}) {
    absl::StatusOr<std::unique_ptr<Backend>> b = CreateBackend(spec);
    EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument) << "'" << spec << "'";
    EXPECT_NE(b.status().message().find("expected cpu, cuda or cuda:N"), std::string::npos);
    EXPECT_EQ(CheckDeviceName(spec).code(), absl::StatusCode::kInvalidArgument);
  }
  for (const char* spec : {"cpu", "cuda", "cuda:0", "cuda:7"}) {
    EXPECT_TRUE(CheckDeviceName(spec).ok()) << spec;
  }
}

TEST(BackendFactoryTest, CudaIsAGpuOrUnavailable) {
  absl::StatusOr<std::unique_ptr<Backend>> b = CreateBackend("cuda");
  if (!BuiltWithCuda()) {
    EXPECT_EQ(b.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_NE(b.status().message().find("JAMBA_ENABLE_CUDA"), std::string::npos);
    return;
  }
  if (absl::IsUnavailable(b.status())) GTEST_SKIP() << b.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)->device(), Device::kCuda);
  EXPECT_EQ((*b)->name(), "cuda:0");
  // A device index past the last one is InvalidArgument, not a crash.
  EXPECT_EQ(CreateBackend("cuda:4096").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace jamba
