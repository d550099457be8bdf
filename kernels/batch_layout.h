// Host-side description of a ragged batch: several sequences, each contributing a contiguous
// run of rows (tokens) to the batch's token axis, each either prefilling (many rows) or
// decoding (one row), mixed freely. Ops that touch per-sequence state (Mamba conv/scan, paged
// attention) read it; a device backend uploads it once per forward, not once per op.
// No abseil here: this header is shared with CUDA translation units.
#ifndef JAMBA_KERNELS_BATCH_LAYOUT_H_
#define JAMBA_KERNELS_BATCH_LAYOUT_H_

#include <cstdint>
#include <vector>

namespace jamba {

struct SeqSlice {
  int32_t token_begin = 0;  // first row of this sequence in the batch
  int32_t n_tokens = 0;     // rows of this sequence (>= 1)
  int32_t n_past = 0;       // tokens already absorbed into the state; absolute position of row 0.
                            // n_past == 0 means a fresh sequence: stored state is ignored.
  int32_t mamba_slot = -1;  // slot in every Mamba state pool (-1: model has no Mamba layers)
  int32_t kv_seq = -1;      // index into BatchLayout::block_tables (-1: no attention layers)
};

struct BatchLayout {
  int32_t n_tokens = 0;
  std::vector<SeqSlice> seqs;
  // block_tables[kv_seq] lists the physical KV block of each logical block, covering at least
  // positions [0, n_past + n_tokens) of that sequence. Block b holds positions
  // [b * kv_block_size, (b + 1) * kv_block_size).
  std::vector<std::vector<int32_t>> block_tables;
  int32_t kv_block_size = 0;
  // Nonzero: names this layout's contents, which must not change while it keeps the id, so a
  // device backend may reuse its device copy across the ops of one forward (one upload per
  // step, not per layer). 0: no promise; uploaded by every op that reads it.
  uint64_t id = 0;
};

// A fresh nonzero BatchLayout::id (thread-safe, unique within the process).
uint64_t NextBatchLayoutId();

}  // namespace jamba

#endif  // JAMBA_KERNELS_BATCH_LAYOUT_H_
