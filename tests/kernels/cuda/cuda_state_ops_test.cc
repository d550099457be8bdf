// CPU/CUDA parity of the state-carrying ops: MambaConv, MambaScan and paged Attention, over
// ragged batches that mix a fresh prefill, a prefill continuing from stored state and a
// decode row, with block tables out of order. Skipped when no CUDA device is present.
//
// Tolerances, and why:
//  - MambaConv outputs: 1e-6 relative + 1e-7: the same taps in the same order on both sides
//    (the GPU may fuse a multiply-add), then SiLU, whose expf is within 2 ulp of glibc's.
//    The new windows are copies: exact.
//  - MambaScan y and state: 2e-5 relative + 1e-6 after 12 steps: each step's exp(dt A)
//    differs by <= 2 ulp and the state carries it forward (|exp(dt A)| < 1 damps it); y sums
//    the N states in a shuffle tree instead of 0..N-1 (N ulp of sum |h C|).
//  - Attention: 2e-5 absolute for v in [-2, 2] (4x the CPU test's bound for these sizes):
//    the GPU's online softmax rescales as it goes and sums per chunk, the CPU's is two-pass;
//    both are within a few ulp of exact weights. The caches after the append are exact.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <tuple>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/batch_layout.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace jamba {
namespace {

using cuda_test::CudaTest;
using cuda_test::RandomVec;
using cuda_test::Twin;

struct AttnCase {
  int64_t nh, nkv, hd;
  std::vector<SeqSlice> seqs;  // token_begin/n_tokens/n_past (kv_seq is assigned)
  int64_t n_tokens;
};

class CudaStateOpsTest : public CudaTest {
 protected:
  // One attention call on both backends with block size 16, each sequence's blocks
  // scattered over the pool in reverse order; compares outputs and caches.
  void RunAttention(const AttnCase& c);
};

void ExpectClose(const std::vector<float>& cpu, const std::vector<float>& gpu, double rel,
                 double abs, const char* what) {
  ASSERT_EQ(cpu.size(), gpu.size());
  int bad = 0;
  for (size_t i = 0; i < cpu.size() && bad < 10; ++i) {
    if (!(std::fabs(gpu[i] - cpu[i]) <= rel * std::fabs(cpu[i]) + abs)) {  // NaN fails too
      ADD_FAILURE() << what << " at " << i << ": cpu " << cpu[i] << " gpu " << gpu[i];
      ++bad;
    }
  }
}

// Three sequences: a fresh 7-token prefill, a 4-token continuation at n_past 5 and a decode
// row at n_past 9, in Mamba slots 2, 0, 3 of a 4-slot pool.
BatchLayout MambaLayout() {
  BatchLayout l;
  l.n_tokens = 12;
  l.seqs = {{0, 7, 0, 2, -1}, {7, 4, 5, 0, -1}, {11, 1, 9, 3, -1}};
  l.id = NextBatchLayoutId();
  return l;
}

TEST_F(CudaStateOpsTest, MambaConvMixedBatchWithAndWithoutBias) {
  const int64_t di = 300, n = 12, slots = 4, ld = di + 5;
  const BatchLayout layout = MambaLayout();
  // Kernel widths 4 (every Mamba checkpoint), 2 (the shortest window) and 9 (a window longer
  // than the 7-token prefill).
  for (const auto& [with_bias, kw] :
       std::vector<std::pair<bool, int64_t>>{{true, 4}, {false, 4}, {true, 2}, {false, 9}}) {
    SCOPED_TRACE(::testing::Message() << "bias " << with_bias << " K " << kw);
    // x is a column view [n, di] of a wider matrix, as the in_proj output is.
    const Twin x_full = TwinF32(RandomVec(&rng_, n * ld), {n, ld});
    const Twin x = x_full.Cols(3, di);
    const Twin w = TwinF32(RandomVec(&rng_, di * kw, -0.5f, 0.5f), {di, kw});
    const Twin b = TwinF32(RandomVec(&rng_, di, -0.2f, 0.2f), {di});
    const Twin state = TwinF32(RandomVec(&rng_, slots * di * (kw - 1)), {slots, di, kw - 1});
    const Twin out = TwinF32(std::vector<float>(n * di, 0.0f), {n, di});
    cpu_->MambaConv(layout, x.cpu, w.cpu, with_bias ? &b.cpu : nullptr, state.cpu, out.cpu);
    gpu_->MambaConv(layout, x.gpu, w.gpu, with_bias ? &b.gpu : nullptr, state.gpu, out.gpu);
    ExpectClose(Read(cpu_.get(), out.cpu), Read(gpu_.get(), out.gpu), 1e-6, 1e-7, "conv out");
    EXPECT_EQ(Read(gpu_.get(), state.gpu), Read(cpu_.get(), state.cpu)) << "windows";
  }
}

// The decode path on its own, many steps: each step's window feeds the next.
TEST_F(CudaStateOpsTest, MambaConvDecodeStepsCarryTheWindow) {
  const int64_t di = 64, kw = 4;
  const Twin w = TwinF32(RandomVec(&rng_, di * kw), {di, kw});
  const Twin state = TwinF32(std::vector<float>(2 * di * (kw - 1), 0.0f), {2, di, kw - 1});
  for (int32_t step = 0; step < 6; ++step) {
    BatchLayout l;
    l.n_tokens = 1;
    l.seqs = {{0, 1, step, 1, -1}};
    l.id = NextBatchLayoutId();
    const Twin x = TwinF32(RandomVec(&rng_, di), {1, di});
    const Twin out = TwinF32(std::vector<float>(di, 0.0f), {1, di});
    cpu_->MambaConv(l, x.cpu, w.cpu, nullptr, state.cpu, out.cpu);
    gpu_->MambaConv(l, x.gpu, w.gpu, nullptr, state.gpu, out.gpu);
    ExpectClose(Read(cpu_.get(), out.cpu), Read(gpu_.get(), out.gpu), 1e-6, 1e-7, "decode");
  }
  EXPECT_EQ(Read(gpu_.get(), state.gpu), Read(cpu_.get(), state.cpu));
}

TEST_F(CudaStateOpsTest, MambaScanMixedBatchAcrossStateSizes) {
  const BatchLayout layout = MambaLayout();
  const int64_t n = 12, slots = 4;
  // 16: Jamba/Mamba; 5: not a power of two; 64: two states per lane; 1, 2, 3 and 8: warps
  // split into groups of 1, 2, 4 and 8 lanes; 256: the most states a lane holds.
  for (int64_t ns : {16, 5, 64, 1, 2, 3, 8, 256}) {
    const int64_t di = 200;
    const Twin x = TwinF32(RandomVec(&rng_, n * di), {n, di});
    const Twin dt = TwinF32(RandomVec(&rng_, n * di, -4.0f, 1.0f), {n, di});
    std::vector<float> a = RandomVec(&rng_, di * ns, -2.0f, 1.0f);
    for (float& v : a) v = -std::exp(v);
    const Twin A = TwinF32(a, {di, ns});
    // B and C as column views of one [n, 2 ns + 3] matrix, as x_proj's output is.
    const Twin bc = TwinF32(RandomVec(&rng_, n * (2 * ns + 3)), {n, 2 * ns + 3});
    const Twin B = bc.Cols(3, ns), C = bc.Cols(3 + ns, ns);
    const Twin D = TwinF32(RandomVec(&rng_, di), {di});
    const Twin z = TwinF32(RandomVec(&rng_, n * di, -3.0f, 3.0f), {n, di});
    const Twin state = TwinF32(RandomVec(&rng_, slots * di * ns), {slots, di, ns});
    const Twin y = TwinF32(std::vector<float>(n * di, 0.0f), {n, di});
    for (int side = 0; side < 2; ++side) {
      const bool gpu = side == 1;
      MambaScanArgs args;
      args.x = gpu ? x.gpu : x.cpu;
      args.dt = gpu ? dt.gpu : dt.cpu;
      args.A = gpu ? A.gpu : A.cpu;
      args.B = gpu ? B.gpu : B.cpu;
      args.C = gpu ? C.gpu : C.cpu;
      args.D = gpu ? D.gpu : D.cpu;
      args.z = gpu ? z.gpu : z.cpu;
      args.state = gpu ? state.gpu : state.cpu;
      args.y = gpu ? y.gpu : y.cpu;
      (gpu ? gpu_ : cpu_)->MambaScan(layout, args);
    }
    SCOPED_TRACE(::testing::Message() << "N = " << ns);
    // y sums N products h * C (cancelling: |y| is far below the terms) in a different order
    // on each side, so its absolute error grows with N: 1e-6 per 16 states. The state has no
    // such sum and keeps the tight bound.
    const double y_abs = 1e-6 * std::max<int64_t>(1, ns / 16);
    ExpectClose(Read(cpu_.get(), y.cpu), Read(gpu_.get(), y.gpu), 2e-5, y_abs, "y");
    ExpectClose(Read(cpu_.get(), state.cpu), Read(gpu_.get(), state.gpu), 2e-5, 1e-6, "state");
  }
}

void CudaStateOpsTest::RunAttention(const AttnCase& c) {
  const int32_t bs = 16;
  BatchLayout l;
  l.n_tokens = static_cast<int32_t>(c.n_tokens);
  l.kv_block_size = bs;
  l.seqs = c.seqs;
  int32_t blocks = 0;
  for (const SeqSlice& s : c.seqs) blocks += (s.n_past + s.n_tokens + bs - 1) / bs;
  int32_t next = blocks - 1;
  for (SeqSlice& s : l.seqs) {
    s.kv_seq = static_cast<int32_t>(l.block_tables.size());
    std::vector<int32_t> table((s.n_past + s.n_tokens + bs - 1) / bs);
    for (int32_t& b : table) b = next--;
    l.block_tables.push_back(table);
  }
  l.id = NextBatchLayoutId();
  const int64_t n = c.n_tokens, qw = c.nh * c.hd, kvw = c.nkv * c.hd;
  const Twin q = TwinF32(RandomVec(&rng_, n * qw), {n, qw});
  const Twin k = TwinF32(RandomVec(&rng_, n * kvw), {n, kvw});
  const Twin v = TwinF32(RandomVec(&rng_, n * kvw, -2.0f, 2.0f), {n, kvw});
  // The history of continuing sequences: random cache contents.
  const Twin kc = TwinF32(RandomVec(&rng_, blocks * bs * kvw), {blocks, bs, c.nkv, c.hd});
  const Twin vc =
      TwinF32(RandomVec(&rng_, blocks * bs * kvw, -2.0f, 2.0f), {blocks, bs, c.nkv, c.hd});
  const Twin out = TwinF32(std::vector<float>(n * qw, 0.0f), {n, qw});
  for (int side = 0; side < 2; ++side) {
    const bool g = side == 1;
    AttentionArgs a;
    a.q = g ? q.gpu : q.cpu;
    a.k = g ? k.gpu : k.cpu;
    a.v = g ? v.gpu : v.cpu;
    a.k_cache = g ? kc.gpu : kc.cpu;
    a.v_cache = g ? vc.gpu : vc.cpu;
    a.out = g ? out.gpu : out.cpu;
    a.num_heads = c.nh;
    a.num_kv_heads = c.nkv;
    a.head_dim = c.hd;
    a.scale = 1.0f / std::sqrt(static_cast<float>(c.hd));
    (g ? gpu_ : cpu_)->Attention(l, a);
  }
  ExpectClose(Read(cpu_.get(), out.cpu), Read(gpu_.get(), out.gpu), 0.0, 2e-5, "attention out");
  EXPECT_EQ(Read(gpu_.get(), kc.gpu), Read(cpu_.get(), kc.cpu)) << "K cache";
  EXPECT_EQ(Read(gpu_.get(), vc.gpu), Read(cpu_.get(), vc.cpu)) << "V cache";
}

TEST_F(CudaStateOpsTest, AttentionMixedBatchGqaShapes) {
  // Fresh 20-token prefill, 5 tokens at n_past 37, a decode row at n_past 100.
  const std::vector<SeqSlice> seqs = {{0, 20, 0, -1, 0}, {20, 5, 37, -1, 0}, {25, 1, 100, -1, 0}};
  for (const auto& [nh, nkv, hd] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {8, 2, 64}, {4, 4, 128}, {8, 1, 40}, {16, 2, 256}}) {
    SCOPED_TRACE(::testing::Message() << nh << " heads, " << nkv << " KV heads, hd " << hd);
    RunAttention({nh, nkv, hd, seqs, 26});
  }
}

// Prefills long enough for the tiled kernel (>= 16 rows: several row tiles and K/V tiles,
// one continuing at n_past 2000) in one batch with a short continuation and a decode row long
// enough to be split over chunks and merged (the merge must leave the tiled rows alone), for
// GQA ratios from 1 (32 rows per tile) to 32 (one row per tile), 3 (a partial tile of query
// vectors) and head sizes 40 to 256 (the largest needs more than 48 KiB of shared memory).
TEST_F(CudaStateOpsTest, AttentionTiledPrefillMixedWithDecodeAndChunks) {
  const std::vector<SeqSlice> seqs = {{0, 300, 0, -1, 0},
                                      {300, 40, 2000, -1, 0},
                                      {340, 1, 20000, -1, 0},
                                      {341, 3, 50, -1, 0},
                                      {344, 16, 0, -1, 0}};
  for (const auto& [nh, nkv, hd] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {8, 2, 128}, {4, 4, 64}, {32, 1, 64}, {12, 4, 40}, {16, 2, 256}}) {
    SCOPED_TRACE(::testing::Message() << nh << " heads, " << nkv << " KV heads, hd " << hd);
    RunAttention({nh, nkv, hd, seqs, 360});
  }
  // One KV head and a single short row beside a tiled prefill: the decode row is split over
  // chunks on any GPU with more than 4 SMs, so the merge runs next to tiled rows.
  RunAttention({8, 1, 64, {{0, 16, 0, -1, 0}, {16, 1, 20000, -1, 0}}, 17});
}

// A single decode row at a long context: split over many chunks and merged.
TEST_F(CudaStateOpsTest, AttentionLongContextDecodeSplitsOverChunks) {
  RunAttention({8, 2, 128, {{0, 1, 20000, -1, 0}}, 1});
  // Two decode rows of different lengths in one batch, each split differently.
  RunAttention({8, 2, 128, {{0, 1, 3000, -1, 0}, {1, 1, 700, -1, 0}}, 2});
}

}  // namespace
}  // namespace jamba
