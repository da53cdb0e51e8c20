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
    out += e.data.view();
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

namespace {

constexpr size_t kHeaderChecksumAt = 52;
constexpr size_t kSeqAt = 12;
constexpr size_t kHwmAt = 36;

bool knownType(uint8_t t) {
  return t >= static_cast<uint8_t>(RecordType::HardState) &&
         t <= static_cast<uint8_t>(RecordType::SnapshotMarker);
}

void writeU64(std::string& out, size_t at, uint64_t v) {
  std::string le;
  putFixed64(le, v);
  out.replace(at, 8, le);
}

// The payload summary kept in the header (a, b): see wal_record.h.
std::pair<uint64_t, uint64_t> summarize(RecordType type, std::string_view payload) {
  wire::Reader r(payload);
  uint64_t a = 0;
  uint64_t b = 0;
  switch (type) {
    case RecordType::HardState: {
      uint32_t vote = 0;
      r.fixed64(&a);
      r.fixed32(&vote);
      b = vote;
      break;
    }
    case RecordType::Entries: {
      uint32_t count = 0;
      uint64_t term = 0;
      r.fixed32(&count);
      r.fixed64(&term);
      r.fixed64(&a);
      b = count == 0 ? a : a + count - 1;
      break;
    }
    case RecordType::TruncateSuffix: r.fixed64(&a); break;
    case RecordType::SnapshotMarker:
      r.fixed64(&a);
      r.fixed64(&b);
      break;
  }
  return {a, b};
}

}  // namespace

void appendFrame(std::string& out, RecordType type, bool continues, std::string_view payload) {
  KJ_REQUIRE(payload.size() <= kMaxRecordPayloadBytes, "WAL record payload over the limit",
             payload.size(), kMaxRecordPayloadBytes);
  auto [a, b] = summarize(type, payload);
  std::string header;
  header.reserve(kRecordHeaderBytes);
  putFixed32(header, kRecordMagic);
  putU8(header, static_cast<uint8_t>(type));
  putU8(header, continues ? kRecordContinues : 0);
  putU8(header, 0);
  putU8(header, 0);
  putFixed32(header, static_cast<uint32_t>(payload.size()));
  putFixed64(header, 0);  // seq: stamped by the WAL writer
  putFixed64(header, a);
  putFixed64(header, b);
  putFixed64(header, 0);  // hwm: stamped by the WAL writer
  putFixed64(header, hash64(payload));
  putFixed64(header, hash64(std::string_view(header)));
  KJ_ASSERT(header.size() == kRecordHeaderBytes);
  out += header;
  out += payload;
  out += header;
}

uint64_t stampSeqs(std::string& frames, uint64_t firstSeq, Index* hwm) {
  size_t pos = 0;
  uint64_t seq = firstSeq;
  while (pos < frames.size()) {
    auto h = parseHeader(std::string_view(frames).substr(pos));
    KJ_REQUIRE(h.has_value(), "stampSeqs: not a record", pos);
    if (h->type == RecordType::Entries) *hwm = std::max(*hwm, h->b);
    if (h->type == RecordType::SnapshotMarker) *hwm = std::max(*hwm, h->a);
    const size_t trailer = pos + kRecordHeaderBytes + h->length;
    for (size_t at : {pos, trailer}) {
      writeU64(frames, at + kSeqAt, seq);
      writeU64(frames, at + kHwmAt, *hwm);
      writeU64(frames, at + kHeaderChecksumAt,
               hash64(std::string_view(frames).substr(at, kHeaderChecksumAt)));
    }
    pos += h->recordBytes();
    ++seq;
  }
  KJ_ASSERT(pos == frames.size());
  return seq - firstSeq;
}

std::optional<RecordHeader> parseHeader(std::string_view bytes) {
  if (bytes.size() < kRecordHeaderBytes) return std::nullopt;
  wire::Reader r(bytes.substr(0, kRecordHeaderBytes));
  uint32_t magic = 0;
  uint8_t type = 0;
  uint8_t flags = 0;
  uint8_t pad0 = 0;
  uint8_t pad1 = 0;
  RecordHeader h;
  uint64_t stored = 0;
  r.fixed32(&magic);
  r.u8(&type);
  r.u8(&flags);
  r.u8(&pad0);
  r.u8(&pad1);
  r.fixed32(&h.length);
  r.fixed64(&h.seq);
  r.fixed64(&h.a);
  r.fixed64(&h.b);
  r.fixed64(&h.hwm);
  r.fixed64(&h.payloadChecksum);
  r.fixed64(&stored);
  if (!r.done() || magic != kRecordMagic) return std::nullopt;
  if (hash64(bytes.substr(0, kHeaderChecksumAt)) != stored) return std::nullopt;
  if (!knownType(type) || (flags & ~kRecordContinues) != 0 || pad0 != 0 || pad1 != 0 ||
      h.length > kMaxRecordPayloadBytes) {
    return std::nullopt;
  }
  h.type = static_cast<RecordType>(type);
  h.continues = (flags & kRecordContinues) != 0;
  return h;
}

RecordRead readRecord(std::string_view bytes, uint64_t expectSeq) {
  RecordRead out;
  if (bytes.size() < kRecordHeaderBytes) {
    out.status = RecordStatus::Torn;
    out.problem = "record header cut short";
    return out;
  }
  std::optional<RecordHeader> front = parseHeader(bytes);
  std::optional<RecordHeader> back;
  if (front) {
    if (bytes.size() - kRecordHeaderBytes < front->length + kRecordHeaderBytes) {
      // The header says how long the record is, and the bytes end before that.
      out.header = front;
      out.status = RecordStatus::Torn;
      out.problem = "record cut short";
      return out;
    }
    back = parseHeader(bytes.substr(kRecordHeaderBytes + front->length));
  } else {
    // The front copy is damaged: the trailer is the valid header copy, with the same
    // seq, whose length places it right after a payload starting here.
    for (size_t at = kRecordHeaderBytes; at + kRecordHeaderBytes <= bytes.size(); ++at) {
      auto h = parseHeader(bytes.substr(at));
      if (h && h->seq == expectSeq && h->length == at - kRecordHeaderBytes) {
        back = h;
        break;
      }
    }
  }
  if (front && back && !(*front == *back)) {
    out.header = back->seq == expectSeq ? back : front;
    out.status = RecordStatus::Corrupt;
    out.problem = "the record's two header copies disagree";
    return out;
  }
  const std::optional<RecordHeader>& h = front ? front : back;
  out.header = h;
  if (!h) {
    out.status = RecordStatus::Torn;
    out.problem = "no valid record header";
    return out;
  }
  if (h->seq != expectSeq) {
    out.status = RecordStatus::Corrupt;
    out.problem = "record with another seq at this place (a misdirected or lost write)";
    return out;
  }
  std::string_view payload = bytes.substr(kRecordHeaderBytes, h->length);
  if (hash64(payload) == h->payloadChecksum) {
    // Verified (one header copy may be damaged: the other and the payload agree).
    out.status = RecordStatus::Ok;
    out.payload = payload;
    out.degraded = !front || !back;
    return out;
  }
  if (back) {
    // The trailer arrived, so the whole record was written: the payload was damaged
    // after the fact.
    out.status = RecordStatus::Corrupt;
    out.problem = "record payload checksum mismatch in a completely written record";
    return out;
  }
  out.status = RecordStatus::Torn;
  out.problem = "record payload damaged and its trailer missing (a torn write)";
  return out;
}

bool looksLikeV1Record(std::string_view bytes) {
  // v1: [u32 length][u64 XXH3 of type byte + payload][u8 type][payload]
  if (bytes.size() < 13) return false;
  wire::Reader r(bytes.substr(0, 13));
  uint32_t length = 0;
  uint64_t sum = 0;
  uint8_t type = 0;
  r.fixed32(&length);
  r.fixed64(&sum);
  r.u8(&type);
  if (length > kMaxRecordPayloadBytes || bytes.size() - 13 < length) return false;
  if (!knownType(type & 0x7f)) return false;
  return hash64(bytes.substr(12, 1 + length)) == sum;
}

std::optional<RecordBody> decodePayload(RecordType type, std::string_view payload,
                                        std::string* error) {
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
        *error = "entries record with a bad count";
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
          *error = "entry with an unknown kind";
          return std::nullopt;
        }
        e.kind = static_cast<EntryKind>(kind);
        uint32_t len = 0;
        std::string_view data;
        r.fixed32(&len);
        r.raw(len, &data);
        e.data = SharedBytes(data);
        if (!r.failed() && (e.index == 0 || (i > 0 && e.index != entries[0].index + i))) {
          *error = "entries not consecutive";
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
        *error = "snapshot marker with too many voters";
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
        *error = "snapshot marker with a malformed configuration";
        return std::nullopt;
      }
      if (!r.done() || reset > 1) break;
      return RecordBody(std::move(m));
    }
  }
  *error = "malformed record payload";
  return std::nullopt;
}

}  // namespace kvr::disk
