// MambaStatePool and KvCachePool: tensor shapes, hand-computed byte accounting, allocation
// until exhaustion (ResourceExhausted, nothing changed), reuse after free, and double frees as
// programmer errors.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <set>
#include <vector>

#include "absl/status/status.h"
#include "engine/state/kv_cache_pool.h"
#include "engine/state/mamba_state_pool.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"

namespace jamba {
namespace {

void ExpectShape(const Tensor& t, std::vector<int64_t> shape) {
  ASSERT_EQ(t.ndim, static_cast<int>(shape.size()));
  for (size_t i = 0; i < shape.size(); ++i) EXPECT_EQ(t.dim(static_cast<int>(i)), shape[i]) << i;
  EXPECT_EQ(t.dtype, DType::kF32);
  EXPECT_TRUE(t.contiguous());
  EXPECT_NE(t.data, nullptr);
}

class MambaStatePoolTest : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> backend_ = CreateCpuBackend();
};

TEST_F(MambaStatePoolTest, ShapesAndBytes) {
  // 3 layers, Di = 5, N = 4, K = 4, 3 slots.
  auto pool = MambaStatePool::Create(backend_.get(), 3, 5, 4, 4, 3);
  ASSERT_TRUE(pool.ok()) << pool.status();
  MambaStatePool& p = **pool;
  EXPECT_EQ(p.capacity(), 3);
  EXPECT_EQ(p.used(), 0);
  std::set<const void*> distinct;
  for (int64_t l = 0; l < 3; ++l) {
    ExpectShape(p.conv(l), {3, 5, 3});
    ExpectShape(p.ssm(l), {3, 5, 4});
    distinct.insert(p.conv(l).data);
    distinct.insert(p.ssm(l).data);
  }
  EXPECT_EQ(distinct.size(), 6u);
  // Per sequence: 3 layers x 5 channels x (3 conv + 4 ssm) floats x 4 bytes = 420.
  EXPECT_EQ(p.BytesPerSequence(), 420);
  // Jamba-v0.1 (spec 1.7): 28 layers x 8192 x (3 + 16) x 4 bytes.
  auto jamba = MambaStatePool::Create(backend_.get(), 28, 8192, 16, 4, 0);
  ASSERT_TRUE(jamba.ok());
  EXPECT_EQ((*jamba)->BytesPerSequence(), int64_t{28} * 8192 * 19 * 4);
}

TEST_F(MambaStatePoolTest, AllocateUntilExhaustedThenReuse) {
  auto pool = MambaStatePool::Create(backend_.get(), 2, 3, 2, 4, 3);
  ASSERT_TRUE(pool.ok());
  MambaStatePool& p = **pool;
  std::set<int32_t> slots;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<int32_t> s = p.Allocate();
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_GE(*s, 0);
    EXPECT_LT(*s, 3);
    slots.insert(*s);
    EXPECT_EQ(p.used(), i + 1);
  }
  EXPECT_EQ(slots.size(), 3u);
  absl::StatusOr<int32_t> none = p.Allocate();
  EXPECT_EQ(none.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(p.used(), 3);
  // Freeing one slot makes exactly that slot available again.
  p.Free(1);
  EXPECT_EQ(p.used(), 2);
  absl::StatusOr<int32_t> again = p.Allocate();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 1);
  EXPECT_EQ(p.Allocate().status().code(), absl::StatusCode::kResourceExhausted);
  for (int32_t s : slots) p.Free(s);
  EXPECT_EQ(p.used(), 0);
}

TEST_F(MambaStatePoolTest, ZeroSlotsIsAlwaysExhausted) {
  auto pool = MambaStatePool::Create(backend_.get(), 1, 4, 4, 4, 0);
  ASSERT_TRUE(pool.ok());
  EXPECT_EQ((*pool)->Allocate().status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ((*pool)->used(), 0);
}

TEST_F(MambaStatePoolTest, BadSizesAreInvalidArgument) {
  EXPECT_EQ(MambaStatePool::Create(backend_.get(), 1, 4, 4, 0, 2).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MambaStatePool::Create(backend_.get(), 1, 4, 4, 4, -1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MambaStatePool::Create(backend_.get(), -1, 4, 4, 4, 2).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(MambaStatePoolTest, DoubleFreeIsAProgrammerError) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto pool = MambaStatePool::Create(backend_.get(), 1, 2, 2, 2, 2);
  ASSERT_TRUE(pool.ok());
  MambaStatePool& p = **pool;
  absl::StatusOr<int32_t> s = p.Allocate();
  ASSERT_TRUE(s.ok());
  p.Free(*s);
  EXPECT_DEATH(p.Free(*s), "check failed");
  EXPECT_DEATH(p.Free(2), "check failed");   // out of range
  EXPECT_DEATH(p.Free(-1), "check failed");  // out of range
}

class KvCachePoolTest : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> backend_ = CreateCpuBackend();
};

TEST_F(KvCachePoolTest, ShapesAndBytes) {
  // 2 layers, 3 KV heads, hd 8, blocks of 4 positions, 5 blocks.
  auto pool = KvCachePool::Create(backend_.get(), 2, 3, 8, 4, 5);
  ASSERT_TRUE(pool.ok()) << pool.status();
  KvCachePool& p = **pool;
  EXPECT_EQ(p.block_size(), 4);
  EXPECT_EQ(p.num_blocks(), 5);
  EXPECT_EQ(p.used_blocks(), 0);
  EXPECT_EQ(p.free_blocks(), 5);
  std::set<const void*> distinct;
  for (int64_t l = 0; l < 2; ++l) {
    ExpectShape(p.k(l), {5, 4, 3, 8});
    ExpectShape(p.v(l), {5, 4, 3, 8});
    distinct.insert(p.k(l).data);
    distinct.insert(p.v(l).data);
  }
  EXPECT_EQ(distinct.size(), 4u);
  // Per token: 2 layers x (K + V) x 3 heads x 8 dims x 4 bytes = 384.
  EXPECT_EQ(p.BytesPerToken(), 384);
  // Jamba-v0.1 in f32: 4 attention layers x 2 x 8 x 128 x 4 bytes = 32 KiB (16 KiB in bf16,
  // spec section 4.1).
  auto jamba = KvCachePool::Create(backend_.get(), 4, 8, 128, 16, 0);
  ASSERT_TRUE(jamba.ok());
  EXPECT_EQ((*jamba)->BytesPerToken(), 32 * 1024);
}

TEST_F(KvCachePoolTest, BlocksFor) {
  EXPECT_EQ(KvCachePool::BlocksFor(0, 4), 0);
  EXPECT_EQ(KvCachePool::BlocksFor(1, 4), 1);
  EXPECT_EQ(KvCachePool::BlocksFor(4, 4), 1);
  EXPECT_EQ(KvCachePool::BlocksFor(5, 4), 2);
  EXPECT_EQ(KvCachePool::BlocksFor(16, 16), 1);
  EXPECT_EQ(KvCachePool::BlocksFor(17, 16), 2);
  EXPECT_EQ(KvCachePool::BlocksFor(7, 1), 7);
}

TEST_F(KvCachePoolTest, ReserveGrowsTablesAndExhaustionChangesNothing) {
  auto pool = KvCachePool::Create(backend_.get(), 1, 1, 2, 4, 5);
  ASSERT_TRUE(pool.ok());
  KvCachePool& p = **pool;
  std::vector<int32_t> a, b;
  ASSERT_TRUE(p.Reserve(&a, 0).ok());
  EXPECT_TRUE(a.empty());
  ASSERT_TRUE(p.Reserve(&a, 6).ok());  // 2 blocks
  EXPECT_EQ(a.size(), 2u);
  const std::vector<int32_t> a2 = a;
  ASSERT_TRUE(p.Reserve(&a, 8).ok());  // still covered
  EXPECT_EQ(a, a2);
  ASSERT_TRUE(p.Reserve(&a, 9).ok());  // one more, appended; existing entries kept
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(std::vector<int32_t>(a.begin(), a.begin() + 2), a2);
  EXPECT_EQ(p.used_blocks(), 3);
  EXPECT_EQ(p.free_blocks(), 2);

  ASSERT_TRUE(p.Reserve(&b, 1).ok());
  EXPECT_EQ(p.free_blocks(), 1);
  // b needs 3 more blocks for 13 positions; only 1 is free: error, b and the pool unchanged.
  const std::vector<int32_t> b_before = b;
  absl::Status st = p.Reserve(&b, 13);
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(b, b_before);
  EXPECT_EQ(p.used_blocks(), 4);
  EXPECT_EQ(p.free_blocks(), 1);
  // Exactly the remaining block still fits.
  ASSERT_TRUE(p.Reserve(&b, 8).ok());
  EXPECT_EQ(p.free_blocks(), 0);
  EXPECT_EQ(p.Reserve(&b, 9).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(b.size(), 2u);

  // All block ids distinct and in range.
  std::set<int32_t> all(a.begin(), a.end());
  all.insert(b.begin(), b.end());
  EXPECT_EQ(all.size(), 5u);
  EXPECT_GE(*all.begin(), 0);
  EXPECT_LT(*all.rbegin(), 5);

  // Release returns the blocks and clears the table; they can be reserved again.
  const std::set<int32_t> a_blocks(a.begin(), a.end());
  p.Release(&a);
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(p.used_blocks(), 2);
  EXPECT_EQ(p.free_blocks(), 3);
  std::vector<int32_t> c;
  ASSERT_TRUE(p.Reserve(&c, 12).ok());
  EXPECT_EQ(std::set<int32_t>(c.begin(), c.end()), a_blocks);
  p.Release(&b);
  p.Release(&c);
  EXPECT_EQ(p.used_blocks(), 0);
  EXPECT_EQ(p.free_blocks(), 5);
  // Releasing an empty table is a no-op.
  p.Release(&c);
  EXPECT_EQ(p.free_blocks(), 5);
}

TEST_F(KvCachePoolTest, BadSizesAreInvalidArgument) {
  EXPECT_EQ(KvCachePool::Create(backend_.get(), 1, 1, 2, 0, 5).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KvCachePool::Create(backend_.get(), 1, 1, 2, 4, -1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KvCachePool::Create(backend_.get(), -1, 1, 2, 4, 5).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(KvCachePoolTest, DoubleReleaseIsAProgrammerError) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto pool = KvCachePool::Create(backend_.get(), 1, 1, 2, 4, 3);
  ASSERT_TRUE(pool.ok());
  KvCachePool& p = **pool;
  std::vector<int32_t> t;
  ASSERT_TRUE(p.Reserve(&t, 5).ok());
  std::vector<int32_t> copy = t;
  p.Release(&t);
  EXPECT_DEATH(p.Release(&copy), "check failed");
  std::vector<int32_t> bogus = {7};
  EXPECT_DEATH(p.Release(&bogus), "check failed");
}

}  // namespace
}  // namespace jamba
