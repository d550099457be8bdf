// Rope: half-split rotary embedding (Llama/Mixtral convention), in place, each row at absolute
// position n_past + (row - token_begin) of its sequence. Reference from the spec formula in
// double: inv_freq_i = theta^(-2i/hd), angle = pos * inv_freq_i,
// out[i] = x[i] cos - x[i + hd/2] sin, out[i + hd/2] = x[i + hd/2] cos + x[i] sin.
//
// Tolerance: the kernel, like transformers, forms the angle in f32, so the angle itself carries
// a relative error of a few ulps (absolute ~ angle * 2^-22 <= pos * 2^-22); the rotated value's
// error is that times |x|, plus a few ulps of rounding.
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "tests/kernels/kernel_test_util.h"

namespace jamba {
namespace {

using kernel_test::DeviceArena;
using kernel_test::RandomVec;

class RopeTest : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> backend_ = CreateCpuBackend();
  DeviceArena arena_{backend_.get()};
};

BatchLayout OneSeq(int32_t n_tokens, int32_t n_past) {
  BatchLayout layout;
  layout.n_tokens = n_tokens;
  SeqSlice s;
  s.token_begin = 0;
  s.n_tokens = n_tokens;
  s.n_past = n_past;
  layout.seqs.push_back(s);
  return layout;
}

TEST_F(RopeTest, HandComputedHalfSplit) {
  // hd = 4, theta = 100: inv_freq = [1, 0.1]. x = [1, 0, 0, 0] at position 1 -> pair (0, 2)
  // rotates by 1 rad: [cos 1, 0, sin 1, 0]. An interleaved implementation would rotate (0, 1).
  Tensor x = arena_.F32({1, 0, 0, 0}, {1, 4});
  backend_->Rope(OneSeq(1, 1), x, 4, 100.0);
  std::vector<float> got = arena_.ReadF32(x);
  EXPECT_NEAR(got[0], std::cos(1.0), 1e-6);
  EXPECT_EQ(got[1], 0.0f);
  EXPECT_NEAR(got[2], std::sin(1.0), 1e-6);
  EXPECT_EQ(got[3], 0.0f);

  // Second pair at position 10 rotates by 10 * 0.1 = 1 rad: x = [0, 2, 0, 3] ->
  // [0, 2 cos 1 - 3 sin 1, 0, 3 cos 1 + 2 sin 1].
  Tensor y = arena_.F32({0, 2, 0, 3}, {1, 4});
  backend_->Rope(OneSeq(1, 10), y, 4, 100.0);
  got = arena_.ReadF32(y);
  EXPECT_NEAR(got[0], 0.0, 1e-6);
  EXPECT_NEAR(got[1], 2 * std::cos(1.0) - 3 * std::sin(1.0), 1e-5);
  EXPECT_NEAR(got[2], 0.0, 1e-5);
  EXPECT_NEAR(got[3], 3 * std::cos(1.0) + 2 * std::sin(1.0), 1e-5);
}

TEST_F(RopeTest, PositionZeroIsIdentity) {
  std::mt19937 rng(3);
  const std::vector<float> v = RandomVec(&rng, 2 * 16);
  Tensor x = arena_.F32(v, {1, 32});
  backend_->Rope(OneSeq(1, 0), x, 16, 10000.0);
  EXPECT_EQ(arena_.ReadF32(x), v);
}

// Several sequences of a ragged batch, mixed prefill / decode / continuation, several heads.
TEST_F(RopeTest, RaggedBatchAgainstFormula) {
  struct Seq {
    int32_t n_tokens, n_past;
  };
  for (int64_t hd : {2, 8, 64, 128}) {
    for (double theta : {10000.0, 1e6}) {
      SCOPED_TRACE(::testing::Message() << "hd=" << hd << " theta=" << theta);
      const int64_t heads = 3;
      const std::vector<Seq> seqs = {{5, 0}, {1, 17}, {4, 3}, {1, 0}, {2, 250}};
      BatchLayout layout;
      std::vector<int32_t> pos;  // absolute position of every row
      for (const Seq& q : seqs) {
        SeqSlice s;
        s.token_begin = layout.n_tokens;
        s.n_tokens = q.n_tokens;
        s.n_past = q.n_past;
        layout.seqs.push_back(s);
        layout.n_tokens += q.n_tokens;
        for (int32_t t = 0; t < q.n_tokens; ++t) pos.push_back(q.n_past + t);
      }
      const int64_t n = layout.n_tokens, width = heads * hd, half = hd / 2;
      std::mt19937 rng(static_cast<uint32_t>(hd));
      const std::vector<float> v = RandomVec(&rng, n * width);
      Tensor x = arena_.F32(v, {n, width});
      backend_->Rope(layout, x, hd, theta);
      const std::vector<float> got = arena_.ReadF32(x);
      int bad = 0;
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t h = 0; h < heads; ++h) {
          for (int64_t i = 0; i < half; ++i) {
            const double inv_freq = std::pow(theta, -2.0 * i / hd);
            const double angle = pos[r] * inv_freq;
            const double a = v[r * width + h * hd + i], b = v[r * width + h * hd + i + half];
            const double want_a = a * std::cos(angle) - b * std::sin(angle);
            const double want_b = b * std::cos(angle) + a * std::sin(angle);
            const double tol =
                (std::fabs(a) + std::fabs(b)) * (4 * FLT_EPSILON + angle * 4 * FLT_EPSILON);
            const double got_a = got[r * width + h * hd + i];
            const double got_b = got[r * width + h * hd + i + half];
            if ((!(std::fabs(got_a - want_a) <= tol) || !(std::fabs(got_b - want_b) <= tol)) &&
                ++bad <= 5) {
              ADD_FAILURE() << "row " << r << " head " << h << " i " << i << ": (" << got_a << ", "
                            << got_b << ") vs (" << want_a << ", " << want_b << ")";
            }
          }
        }
      }
      EXPECT_EQ(bad, 0);
    }
  }
}

// A row at position p rotated by Rope equals the same row placed at p in a longer prefill, i.e.
// only n_past + offset matters, not where the row sits in the batch.
TEST_F(RopeTest, DecodeRowMatchesSamePositionInPrefill) {
  const int64_t hd = 16, width = 2 * hd;
  std::mt19937 rng(11);
  const std::vector<float> rows = RandomVec(&rng, 6 * width);
  Tensor prefill = arena_.F32(rows, {6, width});
  backend_->Rope(OneSeq(6, 0), prefill, hd, 10000.0);
  const std::vector<float> all = arena_.ReadF32(prefill);
  for (int32_t p = 0; p < 6; ++p) {
    std::vector<float> one(rows.begin() + p * width, rows.begin() + (p + 1) * width);
    Tensor x = arena_.F32(one, {1, width});
    backend_->Rope(OneSeq(1, p), x, hd, 10000.0);
    const std::vector<float> got = arena_.ReadF32(x);
    for (int64_t j = 0; j < width; ++j) EXPECT_EQ(got[j], all[p * width + j]) << p << " " << j;
  }
}

}  // namespace
}  // namespace jamba
