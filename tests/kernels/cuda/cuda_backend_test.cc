// CudaBackend outside the ops: the factory's statuses (these run on machines without a GPU
// too), memory (zero-filled allocation, staged and synchronous uploads, size checks, buffers
// outliving the backend), and the reporting of bad indices through Synchronize()/Download().
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "kernels/cuda/cuda_backend.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace jamba {
namespace {

using cuda_test::CudaTest;
using cuda_test::RandomVec;

// ---- Factory (no GPU needed) ------------------------------------------------------------

TEST(CreateCudaBackendTest, StatusMatchesDeviceCount) {
  absl::StatusOr<int> count = CudaDeviceCount();
  if (!count.ok()) {
    // No driver or no device: everything is Unavailable, nothing aborts.
    EXPECT_EQ(count.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(CreateCudaBackend(0).status().code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(CreateCudaBackend(-1).status().code(), absl::StatusCode::kUnavailable);
    return;
  }
  EXPECT_GT(*count, 0);
  EXPECT_EQ(CreateCudaBackend(-1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateCudaBackend(*count).status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::unique_ptr<Backend>> b = CreateCudaBackend(*count - 1);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)->device(), Device::kCuda);
  EXPECT_EQ((*b)->name(), "cuda:" + std::to_string(*count - 1));
}

// ---- Memory -----------------------------------------------------------------------------

TEST_F(CudaTest, AllocationIsZeroFilledDeviceMemory) {
  Tensor t = Alloc(gpu_.get(), DType::kF32, {7, 9});
  EXPECT_EQ(t.device, Device::kCuda);
  EXPECT_EQ(t.dtype, DType::kF32);
  EXPECT_TRUE(t.contiguous());
  EXPECT_EQ(Read(gpu_.get(), t), std::vector<float>(63, 0.0f));
  Tensor empty = Alloc(gpu_.get(), DType::kI32, {0});
  EXPECT_EQ(empty.numel(), 0);
  EXPECT_EQ(gpu_->Allocate(DType::kF32, {3, -1}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(CudaTest, UploadDownloadRoundTripSmallAndLarge) {
  // 300 small uploads (staged through 64 pinned slots, so slots are reused) enqueued without
  // waiting, then one large synchronous one; every buffer must hold its own data.
  std::vector<std::vector<float>> hosts;
  std::vector<Tensor> tensors;
  for (int i = 0; i < 300; ++i) {
    hosts.push_back(RandomVec(&rng_, 257));
    tensors.push_back(Alloc(gpu_.get(), DType::kF32, {257}));
    ASSERT_TRUE(gpu_->Upload(hosts.back().data(), 257 * sizeof(float), tensors.back()).ok());
  }
  const std::vector<float> big = RandomVec(&rng_, 100000);  // 400 KB: above a staging slot
  Tensor big_t = Alloc(gpu_.get(), DType::kF32, {100000});
  ASSERT_TRUE(gpu_->Upload(big.data(), big.size() * sizeof(float), big_t).ok());
  for (int i = 0; i < 300; ++i) EXPECT_EQ(Read(gpu_.get(), tensors[i]), hosts[i]) << i;
  EXPECT_EQ(Read(gpu_.get(), big_t), big);

  // A row range of a contiguous tensor is contiguous.
  Tensor m = Alloc(gpu_.get(), DType::kF32, {4, 3});
  const std::vector<float> vals = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  ASSERT_TRUE(gpu_->Upload(vals.data(), vals.size() * sizeof(float), m).ok());
  EXPECT_EQ(Read(gpu_.get(), m.Rows(1, 2)), std::vector<float>({3, 4, 5, 6, 7, 8}));
}

TEST_F(CudaTest, MemoryErrorsAreStatuses) {
  Tensor t = Alloc(gpu_.get(), DType::kF32, {4, 4});
  std::vector<float> host(16);
  EXPECT_EQ(gpu_->Upload(host.data(), 15 * sizeof(float), t).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(gpu_->Upload(host.data(), 8 * sizeof(float), t.Cols(1, 2)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(gpu_->Download(t.Cols(1, 2), host.data()).code(), absl::StatusCode::kInvalidArgument);
  // A host tensor is not a CUDA tensor.
  Tensor on_cpu = Alloc(cpu_.get(), DType::kF32, {4, 4});
  EXPECT_EQ(gpu_->Upload(host.data(), 16 * sizeof(float), on_cpu).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(gpu_->Synchronize().ok());
}

TEST_F(CudaTest, BufferMayOutliveBackend) {
  absl::StatusOr<std::unique_ptr<DeviceBuffer>> buf = gpu_->Allocate(DType::kF32, {1024});
  ASSERT_TRUE(buf.ok());
  std::vector<float> host(1024, 2.5f);
  ASSERT_TRUE(gpu_->Upload(host.data(), host.size() * sizeof(float), (*buf)->tensor()).ok());
  gpu_.reset();
  buf->reset();  // frees through the stream the backend created; must not crash
}

TEST_F(CudaTest, TwoBackendsOnOneDeviceWorkSideBySide) {
  absl::StatusOr<std::unique_ptr<Backend>> other = CreateCudaBackend(0);
  ASSERT_TRUE(other.ok()) << other.status();
  const std::vector<float> a = RandomVec(&rng_, 6), b = RandomVec(&rng_, 6);
  Tensor a1 = Put(gpu_.get(), a.data(), DType::kF32, {2, 3});
  Tensor b1 = Put(gpu_.get(), b.data(), DType::kF32, {2, 3});
  Tensor a2 = Put(other->get(), a.data(), DType::kF32, {2, 3});
  Tensor b2 = Put(other->get(), b.data(), DType::kF32, {2, 3});
  gpu_->Add(a1, b1);
  (*other)->Add(b2, a2);
  const std::vector<float> r1 = Read(gpu_.get(), b1), r2 = Read(other->get(), a2);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(r1[i], a[i] + b[i]);
    EXPECT_EQ(r2[i], a[i] + b[i]);
  }
}

// ---- Index errors are reported, not fatal -----------------------------------------------

TEST_F(CudaTest, BadIndicesAreReportedBySynchronize) {
  const std::vector<float> table = RandomVec(&rng_, 5 * 4);
  Tensor tab = Put(gpu_.get(), table.data(), DType::kF32, {5, 4});
  const std::vector<int32_t> bad_ids = {1, 5};  // 5 is out of range
  Tensor ids = Put(gpu_.get(), bad_ids.data(), DType::kI32, {2});
  Tensor out = Alloc(gpu_.get(), DType::kF32, {2, 4});
  gpu_->Embed(tab, ids, out);
  absl::Status s = gpu_->Synchronize();
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_NE(s.message().find("Embed"), absl::string_view::npos) << s;
  // Reported once; the backend stays usable. The valid row was still embedded.
  EXPECT_TRUE(gpu_->Synchronize().ok());
  const std::vector<float> got = Read(gpu_.get(), out);
  for (int j = 0; j < 4; ++j) EXPECT_EQ(got[j], table[1 * 4 + j]);

  // GatherRows, reported by the next Download.
  const std::vector<int32_t> bad_rows = {-1};
  Tensor rows = Put(gpu_.get(), bad_rows.data(), DType::kI32, {1});
  Tensor sel = Alloc(gpu_.get(), DType::kF32, {1, 4});
  gpu_->GatherRows(tab, rows, sel);
  std::vector<float> host(4);
  s = gpu_->Download(sel, host.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_NE(s.message().find("GatherRows"), absl::string_view::npos) << s;

  // ScatterAddScaled.
  const std::vector<float> one = {1.0f};
  Tensor scale = Put(gpu_.get(), one.data(), DType::kF32, {1});
  const std::vector<int32_t> far = {9};
  Tensor far_idx = Put(gpu_.get(), far.data(), DType::kI32, {1});
  gpu_->ScatterAddScaled(sel, far_idx, scale, out);
  s = gpu_->Synchronize();
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_NE(s.message().find("ScatterAddScaled"), absl::string_view::npos) << s;
  EXPECT_TRUE(gpu_->Synchronize().ok());
}

}  // namespace
}  // namespace jamba
