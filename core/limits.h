// Hard limits. Every queue, batch and message in the system is bounded by one of these.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kvr::limits {

constexpr uint32_t kMaxNodes = 7;
constexpr size_t kMaxKeyBytes = 4 * 1024;
constexpr size_t kMaxValueBytes = 1024 * 1024;
constexpr size_t kMaxCommandBytes = kMaxKeyBytes * 2 + kMaxValueBytes * 2 + 256;
constexpr uint32_t kMaxRangeLimit = 10'000;
constexpr size_t kMaxRangeReplyBytes = 4 * 1024 * 1024;
// A client batch (KvService.callBatch): at most this many commands, and at most this many
// bytes of request message. One command of the largest size fits alone.
constexpr size_t kMaxBatchCommands = 512;
constexpr size_t kMaxBatchBytes = 4 * 1024 * 1024;
static_assert(kMaxBatchBytes > kMaxCommandBytes + 1024);
// Raft message and batching limits.
constexpr size_t kMaxEntriesPerAppend = 4096;
constexpr size_t kMaxAppendBytes = 4 * 1024 * 1024;
constexpr size_t kMaxMessageBytes = 16 * 1024 * 1024;
constexpr size_t kMaxSnapshotBytes = size_t(4) * 1024 * 1024 * 1024;
constexpr size_t kMaxSnapshotChunkBytes = 1024 * 1024;
constexpr size_t kMaxInflightAppends = 256;
constexpr size_t kMaxPendingReads = 65'536;
constexpr size_t kMaxPendingProposals = 65'536;
constexpr size_t kMaxUncommittedBytes = 256 * 1024 * 1024;
constexpr uint32_t kMaxSessions = 1'000'000;

}  // namespace kvr::limits
