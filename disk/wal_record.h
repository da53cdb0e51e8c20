// WAL record framing and payload codecs. Pure functions over bytes: no I/O.
//
// Frame (all integers little-endian):
//   [u32 payload length][u64 checksum][u8 type][payload]
// checksum = XXH3_64bits over the type byte followed by the payload. The type byte's
// high bit (kRecordContinues) says "the next record belongs to the same batch": a batch
// is the records of one PersistBatch (or one segment header), the last one without the
// bit. Recovery applies a batch only when its last record is present, so a torn write
// never leaves half a batch applied.
//
// Payloads (a simple binary format of our own, little-endian, exact length):
//   HardState      (1): u64 term, u32 vote, u64 commit
//   Entries        (2): u32 count (>= 1), then per entry:
//                       u64 term, u64 index, u8 kind, u32 data length, data.
//                       Indexes are consecutive. Meaning: discard every stored entry
//                       with index >= the first one, then append.
//   TruncateSuffix (3): u64 from: discard every stored entry with index >= from.
//   SnapshotMarker (4): u64 index, u64 term, u32 voter count (<= kMaxNodes), u32 voters...,
//                       u8 resetLog, u64 data length, u64 data checksum (XXH3_64bits),
//                       then, only when the configuration has learners or addresses,
//                       the conf extension: u32 length, core/membership.h encodeConf
//                       (its voters equal the ones above). Without it: voters only.
//                       The snapshot file snap-<index>-<term>.snap is durable before
//                       this record is written.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/types.h"
#include "core/wire.h"

namespace kvr::disk {

enum class RecordType : uint8_t {
  HardState = 1,
  Entries = 2,
  TruncateSuffix = 3,
  SnapshotMarker = 4,
};
constexpr uint8_t kRecordContinues = 0x80;
constexpr size_t kRecordHeaderBytes = 4 + 8 + 1;
// A batch's entries record may not exceed this (the Replica bounds batches well below).
constexpr size_t kMaxRecordPayloadBytes = 64u * 1024 * 1024;

struct SnapshotMarker {
  SnapshotMeta meta;
  bool resetLog = false;
  uint64_t dataBytes = 0;
  uint64_t dataChecksum = 0;

  bool operator==(const SnapshotMarker&) const = default;
};

struct TruncateSuffix {
  Index from = 0;
};

using RecordBody = std::variant<HardState, std::vector<Entry>, TruncateSuffix, SnapshotMarker>;

// Payload encoders. encodeEntries requires 1..N consecutive entries.
std::string encodeHardState(const HardState& hs);
std::string encodeEntries(const std::vector<Entry>& entries);
std::string encodeTruncateSuffix(Index from);
std::string encodeSnapshotMarker(const SnapshotMarker& marker);
// The optional conf extension of snapshot markers and snapshot file headers (above):
// nothing for a voters-only configuration, so such records stay as before.
void putConfExtension(std::string& out, const ConfState& conf);
// Reads the extension if the reader has bytes left; false if they are malformed or
// disagree with the voters already read into *conf.
bool readConfExtension(wire::Reader& r, ConfState* conf);

// Appends one framed record to `out`. Requires payload <= kMaxRecordPayloadBytes.
void appendFrame(std::string& out, RecordType type, bool continues, std::string_view payload);

enum class FrameStatus : uint8_t {
  Ok,
  Incomplete,  // the bytes end inside the header or the payload
  Bad,         // impossible length, unknown type, or checksum mismatch
};

struct Frame {
  FrameStatus status = FrameStatus::Bad;
  RecordType type = RecordType::HardState;
  bool continues = false;
  std::string_view payload;  // valid only when status == Ok
  size_t frameBytes = 0;     // header + payload, when status == Ok
  const char* problem = "";  // when not Ok
};

// Reads the frame at the start of `bytes`. Never reads outside `bytes`.
Frame readFrame(std::string_view bytes);

// Decodes a checksummed payload. nullopt (with `problem` set) when it is malformed.
std::optional<RecordBody> decodePayload(RecordType type, std::string_view payload,
                                        const char** problem);

}  // namespace kvr::disk
