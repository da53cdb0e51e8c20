#include "disk/wal_record.h"

#include <xxhash.h>

#include <kj/debug.h>

#include "core/limits.h"
#include "disk/byte_codec.h"

namespace kvr::disk {

uint64_t checksum64(std::string_view bytes) { return XXH3_64bits(bytes.data(), bytes.size()); }

std::string encodeHardState(const HardState& hs) {
  std::string out;
  putU64(out, hs.term);
  putU32(out, hs.vote);
  putU64(out, hs.commit);
  return out;
}

std::string encodeEntries(const std::vector<Entry>& entries) {
  KJ_REQUIRE(!entries.empty());
  KJ_REQUIRE(entries.size() <= UINT32_MAX);
  size_t bytes = 4;
  for (const Entry& e : entries) bytes += 8 + 8 + 1 + 4 + e.data.size();
  std::string out;
  out.reserve(bytes);
  putU32(out, static_cast<uint32_t>(entries.size()));
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    KJ_REQUIRE(e.index == entries[0].index + i, "entries of a batch must be consecutive",
               entries[0].index, i, e.index);
    KJ_REQUIRE(e.data.size() <= UINT32_MAX);
    putU64(out, e.term);
    putU64(out, e.index);
    putU8(out, static_cast<uint8_t>(e.kind));
    putU32(out, static_cast<uint32_t>(e.data.size()));
    out += e.data;
  }
  return out;
}

std::string encodeTruncateSuffix(Index from) {
  std::string out;
  putU64(out, from);
  return out;
}

std::string encodeSnapshotMarker(const SnapshotMarker& m) {
  KJ_REQUIRE(m.meta.conf.voters.size() <= limits::kMaxNodes);
  std::string out;
  putU64(out, m.meta.index);
  putU64(out, m.meta.term);
  putU32(out, static_cast<uint32_t>(m.meta.conf.voters.size()));
  for (NodeId v : m.meta.conf.voters) putU32(out, v);
  putU8(out, m.resetLog ? 1 : 0);
  putU64(out, m.dataBytes);
  putU64(out, m.dataChecksum);
  return out;
}

void appendFrame(std::string& out, RecordType type, bool continues, std::string_view payload) {
  KJ_REQUIRE(payload.size() <= kMaxRecordPayloadBytes, "WAL record payload over the limit",
             payload.size(), kMaxRecordPayloadBytes);
  size_t start = out.size();
  putU32(out, static_cast<uint32_t>(payload.size()));
  putU64(out, 0);  // checksum, filled below
  putU8(out, static_cast<uint8_t>(type) | (continues ? kRecordContinues : 0));
  out += payload;
  uint64_t sum = checksum64(std::string_view(out).substr(start + 12));
  for (int i = 0; i < 8; ++i) out[start + 4 + i] = static_cast<char>((sum >> (8 * i)) & 0xff);
}

static bool knownType(uint8_t t) {
  return t >= static_cast<uint8_t>(RecordType::HardState) &&
         t <= static_cast<uint8_t>(RecordType::SnapshotMarker);
}

Frame readFrame(std::string_view bytes) {
  Frame f;
  if (bytes.size() < kRecordHeaderBytes) {
    f.status = FrameStatus::Incomplete;
    f.problem = "record header cut short";
    return f;
  }
  uint64_t length = loadLe(bytes.data(), 4);
  uint64_t stored = loadLe(bytes.data() + 4, 8);
  uint8_t typeByte = static_cast<uint8_t>(bytes[12]);
  if (length > kMaxRecordPayloadBytes) {
    f.status = FrameStatus::Bad;
    f.problem = "record length over the limit";
    return f;
  }
  if (!knownType(typeByte & ~kRecordContinues)) {
    f.status = FrameStatus::Bad;
    f.problem = "unknown record type";
    return f;
  }
  if (bytes.size() - kRecordHeaderBytes < length) {
    f.status = FrameStatus::Incomplete;
    f.problem = "record payload cut short";
    return f;
  }
  if (checksum64(bytes.substr(12, 1 + length)) != stored) {
    f.status = FrameStatus::Bad;
    f.problem = "record checksum mismatch";
    return f;
  }
  f.status = FrameStatus::Ok;
  f.type = static_cast<RecordType>(typeByte & ~kRecordContinues);
  f.continues = (typeByte & kRecordContinues) != 0;
  f.payload = bytes.substr(kRecordHeaderBytes, length);
  f.frameBytes = kRecordHeaderBytes + length;
  return f;
}

std::optional<RecordBody> decodePayload(RecordType type, std::string_view payload,
                                        const char** problem) {
  ByteReader r(payload);
  switch (type) {
    case RecordType::HardState: {
      HardState hs;
      hs.term = r.u64();
      hs.vote = r.u32();
      hs.commit = r.u64();
      if (!r.done()) break;
      return RecordBody(hs);
    }
    case RecordType::Entries: {
      uint32_t count = r.u32();
      // Each entry takes at least 21 bytes: reject absurd counts before allocating.
      if (count == 0 || count > r.remaining() / 21) {
        *problem = "entries record with a bad count";
        return std::nullopt;
      }
      std::vector<Entry> entries;
      entries.reserve(count);
      for (uint32_t i = 0; i < count && !r.failed(); ++i) {
        Entry e;
        e.term = r.u64();
        e.index = r.u64();
        uint8_t kind = r.u8();
        if (kind > static_cast<uint8_t>(EntryKind::Command)) {
          *problem = "entry with an unknown kind";
          return std::nullopt;
        }
        e.kind = static_cast<EntryKind>(kind);
        uint32_t len = r.u32();
        e.data = std::string(r.bytes(len));
        if (!r.failed() && (e.index == 0 || (i > 0 && e.index != entries[0].index + i))) {
          *problem = "entries not consecutive";
          return std::nullopt;
        }
        entries.push_back(std::move(e));
      }
      if (!r.done()) break;
      return RecordBody(std::move(entries));
    }
    case RecordType::TruncateSuffix: {
      TruncateSuffix t{r.u64()};
      if (!r.done() || t.from == 0) break;
      return RecordBody(t);
    }
    case RecordType::SnapshotMarker: {
      SnapshotMarker m;
      m.meta.index = r.u64();
      m.meta.term = r.u64();
      uint32_t voters = r.u32();
      if (voters > limits::kMaxNodes) {
        *problem = "snapshot marker with too many voters";
        return std::nullopt;
      }
      for (uint32_t i = 0; i < voters; ++i) m.meta.conf.voters.push_back(r.u32());
      uint8_t reset = r.u8();
      m.resetLog = reset == 1;
      m.dataBytes = r.u64();
      m.dataChecksum = r.u64();
      if (!r.done() || reset > 1) break;
      return RecordBody(std::move(m));
    }
  }
  *problem = "malformed record payload";
  return std::nullopt;
}

}  // namespace kvr::disk
