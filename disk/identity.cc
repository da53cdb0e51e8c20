#include "disk/identity.h"

#include "core/hash.h"
#include "core/wire.h"
#include "disk/disk_error.h"
#include "disk/wal_record.h"

namespace kvr::disk {
namespace {

constexpr std::string_view kIdentityMagicV1 = "KVRID001";
constexpr std::string_view kIdentityMagic = "KVRID002";
constexpr size_t kIdentityBytesV1 = 8 + 8 + 4 + 8;
constexpr size_t kIdentityBytes = 8 + 8 + 4 + 8 + 8;

std::string encodeIdentity(const NodeIdentity& id) {
  std::string out(kIdentityMagic);
  wire::putFixed64(out, id.clusterId);
  wire::putFixed32(out, id.nodeId);
  wire::putFixed64(out, id.incarnation);
  wire::putFixed64(out, hash64(out));
  return out;
}

}  // namespace

NodeIdentity checkOrWriteIdentity(FileSystem& fs, const std::string& dir,
                                  const NodeIdentity& id, bool freshDir) {
  const std::string path = joinPath(dir, kIdentityFileName);
  if (!fs.exists(path)) {
    if (!freshDir) {
      refuseToStart(path, 0,
                    "the identity file is missing but the data dir holds WAL or "
                    "snapshot files");
    }
    replaceFileDurably(fs, dir, kIdentityFileName, encodeIdentity(id));
    return id;
  }
  auto file = fs.open(path, OpenMode::Read);
  std::string bytes = file->pread(0, kIdentityBytes + 1);
  const std::string_view magic = std::string_view(bytes).substr(0, 8);
  const bool v1 = magic == kIdentityMagicV1;
  const size_t size = v1 ? kIdentityBytesV1 : kIdentityBytes;
  if (bytes.size() != size || (!v1 && magic != kIdentityMagic)) {
    refuseToStart(path, 0, "the identity file is malformed");
  }
  wire::Reader r(bytes);
  NodeIdentity stored;
  uint64_t sum = 0;
  r.expect(magic);
  r.fixed64(&stored.clusterId);
  r.fixed32(&stored.nodeId);
  if (!v1) r.fixed64(&stored.incarnation);
  r.fixed64(&sum);
  if (hash64(std::string_view(bytes).substr(0, size - 8)) != sum) {
    refuseToStart(path, size - 8, "the identity file's checksum does not match");
  }
  if (stored.clusterId != id.clusterId || stored.nodeId != id.nodeId) {
    throwDiskError("disk: refusing to start: " + path +
                   " says this data dir belongs to cluster " +
                   std::to_string(stored.clusterId) + " node " + std::to_string(stored.nodeId) +
                   ", but this process is cluster " + std::to_string(id.clusterId) + " node " +
                   std::to_string(id.nodeId) +
                   ". Point the node at its own data dir, or remove this one to start empty.");
  }
  if (stored.incarnation == 0 && id.incarnation != 0) {
    // Written before incarnations (or by a caller without one, e.g. a restore): it gets
    // one now, once. Peers have no record of it yet.
    stored.incarnation = id.incarnation;
    replaceFileDurably(fs, dir, kIdentityFileName, encodeIdentity(stored));
  }
  return stored;
}

}  // namespace kvr::disk
