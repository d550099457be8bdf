#include "kernels/cuda/device_layout.h"

#include <algorithm>
#include <cstdint>

#include "absl/container/flat_hash_set.h"
#include "common/check.h"

namespace jamba::cuda {

absl::StatusOr<DeviceLayout> LayoutCache::Get(const BatchLayout& layout,
                                              const LayoutLimits& limits) {
  // The per-sequence checks run on every call (a few per sequence): a cached layout may be
  // used by an op whose pool is smaller than the one it was first checked against.
  int32_t max_tokens = 0, max_visible = 0, short_rows = 0;
  JAMBA_CHECK(layout.n_tokens >= 0 && layout.n_tokens <= limits.rows);
  for (const SeqSlice& s : layout.seqs) {
    JAMBA_CHECK_MSG(s.token_begin >= 0 && s.n_tokens >= 1 && s.n_past >= 0 &&
                        static_cast<int64_t>(s.token_begin) + s.n_tokens <= layout.n_tokens,
                    "BatchLayout: a sequence's rows are outside the batch");
    if (limits.mamba_slots >= 0) {
      JAMBA_CHECK_MSG(s.mamba_slot >= 0 && s.mamba_slot < limits.mamba_slots,
                      "BatchLayout: Mamba slot out of range");
    }
    if (limits.kv_blocks >= 0) {
      JAMBA_CHECK_MSG(s.kv_seq >= 0 && s.kv_seq < static_cast<int32_t>(layout.block_tables.size()),
                      "BatchLayout: sequence without a block table");
      JAMBA_CHECK(layout.kv_block_size > 0);
      const std::vector<int32_t>& table = layout.block_tables[s.kv_seq];
      const int64_t end = static_cast<int64_t>(s.n_past) + s.n_tokens;
      JAMBA_CHECK_MSG((end + layout.kv_block_size - 1) / layout.kv_block_size <=
                          static_cast<int64_t>(table.size()),
                      "BatchLayout: block table shorter than the sequence");
    }
    max_tokens = std::max(max_tokens, s.n_tokens);
    if (s.n_tokens < kTiledAttentionMinRows) short_rows += s.n_tokens;
    max_visible = static_cast<int32_t>(
        std::max<int64_t>(max_visible, static_cast<int64_t>(s.n_past) + s.n_tokens));
  }
  const bool cached = layout.id != 0 && layout.id == cached_id_;
  // Block table entries: checked once per layout (and again by an op with a smaller pool).
  if (limits.kv_blocks >= 0 && (!cached || limits.kv_blocks < checked_kv_blocks_)) {
    for (const std::vector<int32_t>& table : layout.block_tables) {
      for (int32_t b : table) {
        JAMBA_CHECK_MSG(b >= 0 && b < limits.kv_blocks, "BatchLayout: KV block out of range");
      }
    }
    if (cached) checked_kv_blocks_ = limits.kv_blocks;
  }
  if (cached) return cached_;
  // The GPU runs the sequences of a batch concurrently, so sequences sharing rows, a Mamba
  // slot or a block table would race where the CPU backend runs them one after another.
  {
    std::vector<bool> row_used(layout.n_tokens, false);
    absl::flat_hash_set<int32_t> slots, tables;
    for (const SeqSlice& s : layout.seqs) {
      for (int32_t t = 0; t < s.n_tokens; ++t) {
        JAMBA_CHECK_MSG(!row_used[s.token_begin + t], "BatchLayout: sequences share a row");
        row_used[s.token_begin + t] = true;
      }
      JAMBA_CHECK_MSG(s.mamba_slot < 0 || slots.insert(s.mamba_slot).second,
                      "BatchLayout: sequences share a Mamba slot");
      JAMBA_CHECK_MSG(s.kv_seq < 0 || tables.insert(s.kv_seq).second,
                      "BatchLayout: sequences share a block table");
    }
  }
  // A failed upload below must not leave the previous layout's (possibly freed) memory
  // cached under its id.
  cached_id_ = 0;

  // [seqs as 5 i32 each | row_seq | table_offsets | tables | tiled_seqs]
  const int32_t num_seqs = static_cast<int32_t>(layout.seqs.size());
  int32_t num_tiled = 0;
  for (const SeqSlice& s : layout.seqs) num_tiled += s.n_tokens >= kTiledAttentionMinRows;
  const int32_t num_tables = static_cast<int32_t>(layout.block_tables.size());
  size_t table_total = 0;
  for (const auto& t : layout.block_tables) table_total += t.size();
  static_assert(sizeof(DeviceSeq) == 5 * sizeof(int32_t), "DeviceSeq is five packed i32");
  const size_t seq_words = 5 * static_cast<size_t>(num_seqs);
  const size_t words = seq_words + layout.n_tokens + (num_tables + 1) + table_total + num_tiled;
  host_.assign(std::max<size_t>(words, 1), 0);
  int32_t* seq_out = host_.data();
  int32_t* row_seq = seq_out + seq_words;
  int32_t* offsets = row_seq + layout.n_tokens;
  int32_t* tables = offsets + num_tables + 1;
  int32_t* tiled = tables + table_total;
  std::fill(row_seq, row_seq + layout.n_tokens, -1);
  for (int32_t i = 0; i < num_seqs; ++i) {
    const SeqSlice& s = layout.seqs[i];
    int32_t* o = seq_out + 5 * i;
    o[0] = s.token_begin;
    o[1] = s.n_tokens;
    o[2] = s.n_past;
    o[3] = s.mamba_slot;
    o[4] = s.kv_seq;
    for (int32_t t = 0; t < s.n_tokens; ++t) row_seq[s.token_begin + t] = i;
    if (s.n_tokens >= kTiledAttentionMinRows) *tiled++ = i;
  }
  size_t at = 0;
  for (int32_t i = 0; i < num_tables; ++i) {
    offsets[i] = static_cast<int32_t>(at);
    std::copy(layout.block_tables[i].begin(), layout.block_tables[i].end(), tables + at);
    at += layout.block_tables[i].size();
  }
  offsets[num_tables] = static_cast<int32_t>(at);

  const size_t bytes = host_.size() * sizeof(int32_t);
  absl::StatusOr<void*> dev = scratch_.Reserve(bytes);
  if (!dev.ok()) return dev.status();
  absl::Status s = copy_(host_.data(), bytes, *dev);
  if (!s.ok()) return s;
  const int32_t* base = static_cast<const int32_t*>(*dev);
  DeviceLayout d{};
  d.seqs = reinterpret_cast<const DeviceSeq*>(base);
  d.row_seq = base + seq_words;
  d.table_offsets = d.row_seq + layout.n_tokens;
  d.tables = d.table_offsets + num_tables + 1;
  d.tiled_seqs = d.tables + table_total;
  d.num_tiled_seqs = num_tiled;
  d.num_seqs = num_seqs;
  d.n_tokens = layout.n_tokens;
  d.kv_block_size = layout.kv_block_size;
  d.max_seq_tokens = max_tokens;
  d.max_visible = max_visible;
  d.short_rows = short_rows;
  cached_id_ = layout.id;
  cached_ = d;
  checked_kv_blocks_ = limits.kv_blocks >= 0 ? limits.kv_blocks : INT64_MAX;
  return d;
}

}  // namespace jamba::cuda
