#include "disk/snapshot_store.h"

#include <cinttypes>
#include <cstdio>

#include <kj/debug.h>

#include "core/hash.h"
#include "core/limits.h"
#include "core/membership.h"
#include "core/text.h"
#include "core/wire.h"
#include "disk/disk_error.h"

namespace kvr::disk {
namespace {

using wire::putFixed32;
using wire::putFixed64;

constexpr std::string_view kSnapFileMagic = "KVRSNAP1";
constexpr size_t kMaxHeaderBytes = 8 + 8 + 4 + 4 * limits::kMaxNodes + 8 + 8 + 4 +
                                   limits::kMaxConfBytes;
constexpr size_t kWriteChunkBytes = 4u * 1024 * 1024;
// A snapshot file hints write-behind (File::writeBehind) every this many bytes: at most
// about twice this much of it is dirty at any time, instead of the whole file (270 MB at
// 1M keys) flushed by its final fdatasync while the WAL's fsyncs wait behind it.
constexpr uint64_t kWriteBehindBytes = 4u * 1024 * 1024;

// Appends to a file and hints write-behind every kWriteBehindBytes.
class WriteBehindAppender {
 public:
  explicit WriteBehindAppender(File& file) : file_(file) {}
  void append(std::string_view bytes) {
    file_.append(bytes);
    sinceHint_ += bytes.size();
    if (sinceHint_ >= kWriteBehindBytes) {
      file_.writeBehind();
      sinceHint_ = 0;
    }
  }

 private:
  File& file_;
  uint64_t sinceHint_ = 0;
};

std::string encodeHeader(const SnapshotMeta& meta, uint64_t dataBytes, uint64_t dataSum) {
  std::string header;
  putFixed64(header, meta.index);
  putFixed64(header, meta.term);
  putFixed32(header, static_cast<uint32_t>(meta.conf.voters.size()));
  for (NodeId v : meta.conf.voters) putFixed32(header, v);
  putFixed64(header, dataBytes);
  putFixed64(header, dataSum);
  putConfExtension(header, meta.conf);
  std::string out(kSnapFileMagic);
  putFixed32(out, static_cast<uint32_t>(header.size()));
  out += header;
  putFixed64(out, hash64(out));
  return out;
}

}  // namespace

std::string SnapshotStore::fileName(const SnapshotMeta& meta) {
  char name[64];
  std::snprintf(name, sizeof(name), "snap-%016" PRIx64 "-%016" PRIx64 ".snap", meta.index,
                meta.term);
  return name;
}

bool SnapshotStore::isSnapshotFileName(const std::string& name) {
  return name.compare(0, 5, "snap-") == 0 &&
         (name.ends_with(".snap") || name.ends_with(".snap.tmp"));
}

SnapshotMarker SnapshotStore::write(const Snapshot& snap, bool resetLog) {
  KJ_REQUIRE(snap.data != nullptr, "snapshot without data");
  KJ_REQUIRE(snap.meta.conf.voters.size() <= limits::kMaxNodes);
  const std::string& data = *snap.data;
  KJ_REQUIRE(data.size() <= limits::kMaxSnapshotBytes, "snapshot over the size limit",
             data.size());
  SnapshotMarker marker;
  marker.meta = snap.meta;
  marker.resetLog = resetLog;
  marker.dataBytes = data.size();
  marker.dataChecksum = hash64(data);
  writeFile(marker, [&](File& file) {
    WriteBehindAppender out(file);
    for (size_t off = 0; off < data.size(); off += kWriteChunkBytes) {
      out.append(std::string_view(data).substr(off, kWriteChunkBytes));
    }
  });
  return marker;
}

SnapshotMarker SnapshotStore::write(const SnapshotMeta& meta, SnapshotSource& source,
                                    bool resetLog) {
  KJ_REQUIRE(meta.conf.voters.size() <= limits::kMaxNodes);
  SnapshotMarker marker;
  marker.meta = meta;
  marker.resetLog = resetLog;
  {
    Hasher sum;
    marker.dataBytes = source.stream([&](std::string_view piece) { sum.update(piece); });
    marker.dataChecksum = sum.digest();
  }
  KJ_REQUIRE(marker.dataBytes <= limits::kMaxSnapshotBytes, "snapshot over the size limit",
             marker.dataBytes);
  writeFile(marker, [&](File& file) {
    Hasher sum;
    WriteBehindAppender out(file);
    const uint64_t bytes = source.stream([&](std::string_view piece) {
      sum.update(piece);
      out.append(piece);
    });
    KJ_REQUIRE(bytes == marker.dataBytes && sum.digest() == marker.dataChecksum,
               "a snapshot source gave different bytes the second time", meta.index);
  });
  return marker;
}

void SnapshotStore::writeFile(const SnapshotMarker& marker,
                              const std::function<void(File&)>& data) {
  const std::string path = joinPath(dir_, fileName(marker.meta));
  const std::string tmp = path + ".tmp";
  if (fs_.exists(tmp)) fs_.remove(tmp);
  {
    auto file = fs_.open(tmp, OpenMode::Create);
    file->append(encodeHeader(marker.meta, marker.dataBytes, marker.dataChecksum));
    data(*file);
    file->datasync();
  }
  fs_.rename(tmp, path);
  fs_.syncDir(dir_);
}

Snapshot SnapshotStore::load(const SnapshotMarker& marker) {
  const std::string name = fileName(marker.meta);
  const std::string path = joinPath(dir_, name);
  if (!fs_.exists(path)) {
    refuseToStart(path, 0, "the snapshot file the WAL points at is missing");
  }
  auto file = fs_.open(path, OpenMode::Read);
  const uint64_t size = file->size();
  std::string prefix = file->pread(0, std::min<uint64_t>(size, 12 + kMaxHeaderBytes + 8));
  if (prefix.size() < 12 || std::string_view(prefix).substr(0, 8) != kSnapFileMagic) {
    refuseToStart(path, 0, "not a snapshot file (bad magic)");
  }
  uint32_t headerBytes = 0;
  wire::Reader(std::string_view(prefix).substr(8, 4)).fixed32(&headerBytes);
  if (headerBytes > kMaxHeaderBytes || prefix.size() < 12 + size_t(headerBytes) + 8) {
    refuseToStart(path, 8, "snapshot header length is impossible");
  }
  const size_t headerEnd = 12 + headerBytes;
  uint64_t headerSum = 0;
  wire::Reader(std::string_view(prefix).substr(headerEnd, 8)).fixed64(&headerSum);
  if (hash64(std::string_view(prefix).substr(0, headerEnd)) != headerSum) {
    refuseToStart(path, headerEnd, "snapshot header checksum mismatch");
  }
  wire::Reader r(std::string_view(prefix).substr(12, headerBytes));
  SnapshotMeta meta;
  uint32_t voters = 0;
  uint64_t dataBytes = 0;
  uint64_t dataSum = 0;
  r.fixed64(&meta.index);
  r.fixed64(&meta.term);
  r.fixed32(&voters);
  for (uint32_t i = 0; i < voters && i <= limits::kMaxNodes; ++i) {
    NodeId v = 0;
    r.fixed32(&v);
    meta.conf.voters.push_back(v);
  }
  r.fixed64(&dataBytes);
  r.fixed64(&dataSum);
  bool confOk = readConfExtension(r, &meta.conf);
  if (!confOk || !r.done() || !(meta == marker.meta) || dataBytes != marker.dataBytes ||
      dataSum != marker.dataChecksum) {
    refuseToStart(path, 12, "snapshot header does not match the WAL's snapshot marker");
  }
  const uint64_t dataStart = headerEnd + 8;
  if (size != dataStart + dataBytes) {
    refuseToStart(path, dataStart,
                  "snapshot file is " + std::to_string(size) + " bytes, expected " +
                      std::to_string(dataStart + dataBytes));
  }
  std::string data = file->pread(dataStart, dataBytes);
  if (data.size() != dataBytes || hash64(data) != dataSum) {
    refuseToStart(path, dataStart, "snapshot data checksum mismatch");
  }
  Snapshot snap;
  snap.meta = meta;
  snap.data = std::make_shared<const std::string>(std::move(data));
  return snap;
}

bool SnapshotStore::readData(const SnapshotMeta& meta, uint64_t size, uint64_t offset,
                             size_t len, std::string* out) {
  KJ_REQUIRE(offset < size && len > 0 && size <= limits::kMaxSnapshotBytes, offset, size);
  const std::string path = joinPath(dir_, fileName(meta));
  const size_t want = static_cast<size_t>(std::min<uint64_t>(len, size - offset));
  std::string bytes;
  bool ok = false;
  // The writer may remove the file at any moment (a newer snapshot became durable):
  // every failure here means "not available", never a broken invariant.
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                if (!fs_.exists(path)) return;
                auto file = fs_.open(path, OpenMode::Read);
                const std::string prefix = file->pread(0, 12);
                if (prefix.size() != 12 ||
                    std::string_view(prefix).substr(0, 8) != kSnapFileMagic)
                  return;
                uint32_t headerBytes = 0;
                wire::Reader(std::string_view(prefix).substr(8, 4)).fixed32(&headerBytes);
                if (headerBytes > kMaxHeaderBytes) return;
                const uint64_t dataStart = 12 + uint64_t(headerBytes) + 8;
                if (file->size() != dataStart + size) return;
                bytes = file->pread(dataStart + offset, want);
                ok = bytes.size() == want;
              })) {
    (void)e;
    return false;
  }
  if (!ok) return false;
  *out = std::move(bytes);
  return true;
}

std::optional<Index> SnapshotStore::indexOfFileName(const std::string& name) {
  // snap-<16 hex digits of the index>-<16 hex digits of the term>.snap[.tmp]
  constexpr size_t kHexDigits = 16;
  if (!isSnapshotFileName(name) || name.size() < 5 + kHexDigits + 1 ||
      name[5 + kHexDigits] != '-') {
    return std::nullopt;
  }
  return text::parseHex16(std::string_view(name).substr(5, kHexDigits));
}

void SnapshotStore::removeReplacedBy(const SnapshotMeta& keep) {
  const std::string keepName = fileName(keep);
  removeWhere([&](const std::string& name) {
    const std::optional<Index> index = indexOfFileName(name);
    return index && *index <= keep.index && name != keepName;
  });
}

void SnapshotStore::removeAllExcept(const std::optional<SnapshotMeta>& keep) {
  const std::string keepName = keep ? fileName(*keep) : std::string();
  removeWhere(
      [&](const std::string& name) { return isSnapshotFileName(name) && name != keepName; });
}

void SnapshotStore::removeWhere(const std::function<bool(const std::string&)>& doomed) {
  bool removed = false;
  for (const std::string& name : fs_.list(dir_)) {
    if (doomed(name)) {
      fs_.remove(joinPath(dir_, name));
      removed = true;
    }
  }
  if (removed) fs_.syncDir(dir_);
}

}  // namespace kvr::disk
