// WAL record framing and payload codecs. Pure functions over bytes: no I/O.
//
// Format v2 (docs/STORAGE.md). A record is a header, the payload, and a copy of the
// header (the trailer), all integers little-endian:
//   header (60 bytes) = u32 magic "KVW2" | u8 type | u8 flags (bit 0: continues) |
//                       u16 zero | u32 payload length | u64 record seq | u64 a | u64 b |
//                       u64 hwm | u64 XXH3 of the payload | u64 XXH3 of the 52 bytes
//                       before it
// `seq` counts every record of this WAL from 1 (disk/wal.h); the writer stamps it when
// it appends, so a record found at the wrong place (a misdirected write) fails its seq.
// `hwm` (also stamped by the writer): the highest entry index this WAL ever held, this
// record included. Any record that survives after a damaged one thus bounds what the
// node may have acknowledged, even when the damage took both copies of a header.
// `a`/`b` summarize the payload, so a record whose payload is damaged still says what
// it held: Entries: first and last index; HardState: term and vote; TruncateSuffix:
// from, 0; SnapshotMarker: index and term.
// The header has its own checksum and is written twice (before and after the
// payload): one damaged copy still tells the record's length and content, and a valid
// trailer proves the whole record reached the disk, so damage inside it is corruption,
// never a torn write. "continues" says the next record belongs to the same batch: a
// batch is the records of one PersistBatch (or one segment header), the last one
// without the flag. Recovery applies a batch only when its last record is present.
//
// Format v1 (before issue 14: [u32 length][u64 checksum][u8 type][payload]) is refused
// with a message saying so.
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
constexpr uint32_t kRecordMagic = 0x3257564b;  // "KVW2"
constexpr uint8_t kRecordContinues = 0x01;     // flags bit
constexpr size_t kRecordHeaderBytes = 60;
constexpr size_t kRecordOverheadBytes = 2 * kRecordHeaderBytes;
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

// Appends one framed record (seq 0: the WAL writer stamps it with stampSeqs). Requires
// payload <= kMaxRecordPayloadBytes.
void appendFrame(std::string& out, RecordType type, bool continues, std::string_view payload);
// Gives the records in `frames` (whole records, as appendFrame made them) the seqs
// firstSeq, firstSeq + 1, ... and their high-water marks, starting from *hwm (updated);
// returns how many records there were.
uint64_t stampSeqs(std::string& frames, uint64_t firstSeq, Index* hwm);

struct RecordHeader {
  RecordType type = RecordType::HardState;
  bool continues = false;
  uint32_t length = 0;
  uint64_t seq = 0;
  uint64_t a = 0;
  uint64_t b = 0;
  Index hwm = 0;
  uint64_t payloadChecksum = 0;

  size_t recordBytes() const { return kRecordOverheadBytes + length; }
  bool operator==(const RecordHeader&) const = default;
};

// Parses a header copy at the start of `bytes` (needs kRecordHeaderBytes): nullopt
// unless magic, checksum, type, flags and length are all valid.
std::optional<RecordHeader> parseHeader(std::string_view bytes);

enum class RecordStatus : uint8_t {
  Ok,       // verified; `header` and `payload` valid
  Torn,     // looks like an append that never completed: bytes end early, or the
            // trailer did not arrive (zeros, garbage or nothing where it belongs)
  Corrupt,  // a completely written record that is damaged, or one out of place
};

struct RecordRead {
  RecordStatus status = RecordStatus::Corrupt;
  std::optional<RecordHeader> header;  // also when damaged, if a copy survived
  std::string_view payload;            // when Ok
  bool degraded = false;               // Ok, but one header copy is damaged or missing
  const char* problem = "";            // when not Ok
};

// Reads the record at `bytes[0]`, which must have seq `expectSeq`. Never reads outside
// `bytes`. Does not look further than the record (the caller decides whether valid
// records after a Torn one make it corruption).
RecordRead readRecord(std::string_view bytes, uint64_t expectSeq);

// Whether `bytes` starts with a record in the format before v2 (checksum valid).
bool looksLikeV1Record(std::string_view bytes);

// Decodes a checksummed payload. nullopt, with the reason in *error, when it is malformed.
std::optional<RecordBody> decodePayload(RecordType type, std::string_view payload,
                                        std::string* error);

}  // namespace kvr::disk
