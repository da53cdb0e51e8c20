#include "disk/wal_record.h"

#include <kj/debug.h>

#include "core/hash.h"
#include "core/limits.h"
#include "core/membership.h"
#include "core/wire.h"

namespace kvr::disk {

using wire::putFixed32;
using wire::putFixed64;
using wire::putU8;

std::string encodeHardState(const HardState& hs) {
  std::string out;
  putFixed64(out, hs.term);
  putFixed32(out, hs.vote);
  putFixed64(out, hs.commit);
  return out;
}

std::string encodeEntries(const std::vector<Entry>& entries) {
  KJ_REQUIRE(!entries.empty());
  KJ_REQUIRE(entries.size() <= UINT32_MAX);
  size_t bytes = 4;
  for (const Entry& e : entries) bytes += 8 + 8 + 1 + 4 + e.data.size();
  std::string out;
  out.reserve(bytes);
  putFixed32(out, static_cast<uint32_t>(entries.size()));
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    KJ_REQUIRE(e.index == entries[0].index + i, "entries of a batch must be consecutive",
               entries[0].index, i, e.index);
    KJ_REQUIRE(e.data.size() <= UINT32_MAX);
    putFixed64(out, e.term);
    putFixed64(out, e.index);
    putU8(out, static_cast<uint8_t>(e.kind));
    putFixed32(out, static_cast<uint32_t>(e.data.size()));
    out += e.data;
  }
  return out;
}

std::string encodeTruncateSuffix(Index from) {
  std::string out;
  putFixed64(out, from);
  return out;
}

std::string encodeSnapshotMarker(const SnapshotMarker& m) {
  KJ_REQUIRE(m.meta.conf.voters.size() <= limits::kMaxNodes);
  std::string out;
  putFixed64(out, m.meta.index);
  putFixed64(out, m.meta.term);
  putFixed32(out, static_cast<uint32_t>(m.meta.conf.voters.size()));
  for (NodeId v : m.meta.conf.voters) putFixed32(out, v);
  putU8(out, m.resetLog ? 1 : 0);
  putFixed64(out, m.dataBytes);
  putFixed64(out, m.dataChecksum);
  putConfExtension(out, m.meta.conf);
  return out;
}

void putConfExtension(std::string& out, const ConfState& conf) {
  if (conf.learners.empty() && conf.addrs.empty()) return;
  std::string c = encodeConf(conf);
  putFixed32(out, static_cast<uint32_t>(c.size()));
  out += c;
}

bool readConfExtension(wire::Reader& r, ConfState* conf) {
  if (r.failed() || r.remaining() == 0) return !r.failed();
  uint32_t len = 0;
  std::string_view bytes;
  if (!r.fixed32(&len) || len > limits::kMaxConfBytes || !r.raw(len, &bytes)) return false;
  ConfState full;
  if (!decodeConf(bytes, &full) || full.voters != conf->voters) return false;
  *conf = std::move(full);
  return true;
}

void appendFrame(std::string& out, RecordType type, bool continues, std::string_view payload) {
  KJ_REQUIRE(payload.size() <= kMaxRecordPayloadBytes, "WAL record payload over the limit",
             payload.size(), kMaxRecordPayloadBytes);
  size_t start = out.size();
  putFixed32(out, static_cast<uint32_t>(payload.size()));
  putFixed64(out, 0);  // checksum, filled below
  putU8(out, static_cast<uint8_t>(type) | (continues ? kRecordContinues : 0));
  out += payload;
  std::string sum;
  putFixed64(sum, hash64(std::string_view(out).substr(start + 12)));
  out.replace(start + 4, sum.size(), sum);
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
  wire::Reader header(bytes.substr(0, kRecordHeaderBytes));
  uint32_t length = 0;
  uint64_t stored = 0;
  uint8_t typeByte = 0;
  header.fixed32(&length);
  header.fixed64(&stored);
  header.u8(&typeByte);
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
  if (hash64(bytes.substr(12, 1 + length)) != stored) {
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
  // Outputs start at zero and a failed read leaves them so; the checks below then see
  // zeros, and !r.done() rejects the record.
  wire::Reader r(payload);
  switch (type) {
    case RecordType::HardState: {
      HardState hs;
      r.fixed64(&hs.term);
      r.fixed32(&hs.vote);
      r.fixed64(&hs.commit);
      if (!r.done()) break;
      return RecordBody(hs);
    }
    case RecordType::Entries: {
      uint32_t count = 0;
      r.fixed32(&count);
      // Each entry takes at least 21 bytes: reject absurd counts before allocating.
      if (count == 0 || count > r.remaining() / 21) {
        *problem = "entries record with a bad count";
        return std::nullopt;
      }
      std::vector<Entry> entries;
      entries.reserve(count);
      for (uint32_t i = 0; i < count && !r.failed(); ++i) {
        Entry e;
        r.fixed64(&e.term);
        r.fixed64(&e.index);
        uint8_t kind = 0;
        r.u8(&kind);
        if (kind > static_cast<uint8_t>(EntryKind::Config)) {
          *problem = "entry with an unknown kind";
          return std::nullopt;
        }
        e.kind = static_cast<EntryKind>(kind);
        uint32_t len = 0;
        std::string_view data;
        r.fixed32(&len);
        r.raw(len, &data);
        e.data = std::string(data);
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
      TruncateSuffix t;
      r.fixed64(&t.from);
      if (!r.done() || t.from == 0) break;
      return RecordBody(t);
    }
    case RecordType::SnapshotMarker: {
      SnapshotMarker m;
      r.fixed64(&m.meta.index);
      r.fixed64(&m.meta.term);
      uint32_t voters = 0;
      r.fixed32(&voters);
      if (voters > limits::kMaxNodes) {
        *problem = "snapshot marker with too many voters";
        return std::nullopt;
      }
      for (uint32_t i = 0; i < voters; ++i) {
        NodeId v = 0;
        r.fixed32(&v);
        m.meta.conf.voters.push_back(v);
      }
      uint8_t reset = 0;
      r.u8(&reset);
      m.resetLog = reset == 1;
      r.fixed64(&m.dataBytes);
      r.fixed64(&m.dataChecksum);
      if (!readConfExtension(r, &m.meta.conf)) {
        *problem = "snapshot marker with a malformed configuration";
        return std::nullopt;
      }
      if (!r.done() || reset > 1) break;
      return RecordBody(std::move(m));
    }
  }
  *problem = "malformed record payload";
  return std::nullopt;
}

}  // namespace kvr::disk
