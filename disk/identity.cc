#include "disk/identity.h"

#include "core/hash.h"
#include "core/wire.h"
#include "disk/disk_error.h"
#include "disk/wal_record.h"

namespace kvr::disk {
namespace {

constexpr std::string_view kIdentityMagic = "KVRID001";
constexpr size_t kIdentityBytes = 8 + 8 + 4 + 8;

std::string encodeIdentity(const NodeIdentity& id) {
  std::string out(kIdentityMagic);
  wire::putFixed64(out, id.clusterId);
  wire::putFixed32(out, id.nodeId);
  wire::putFixed64(out, hash64(out));
  return out;
}

}  // namespace

void checkOrWriteIdentity(FileSystem& fs, const std::string& dir, const NodeIdentity& id,
                          bool freshDir) {
  const std::string path = joinPath(dir, kIdentityFileName);
  if (!fs.exists(path)) {
    if (!freshDir) {
      refuseToStart(path, 0,
                    "the identity file is missing but the data dir holds WAL or "
                    "snapshot files");
    }
    const std::string tmp = path + ".tmp";
    if (fs.exists(tmp)) fs.remove(tmp);
    {
      auto file = fs.open(tmp, OpenMode::Create);
      file->append(encodeIdentity(id));
      file->datasync();
    }
    fs.rename(tmp, path);
    fs.syncDir(dir);
    return;
  }
  auto file = fs.open(path, OpenMode::Read);
  std::string bytes = file->pread(0, kIdentityBytes + 1);
  if (bytes.size() != kIdentityBytes ||
      std::string_view(bytes).substr(0, 8) != kIdentityMagic) {
    refuseToStart(path, 0, "the identity file is malformed");
  }
  wire::Reader r(bytes);
  NodeIdentity stored;
  uint64_t sum = 0;
  r.expect(kIdentityMagic);
  r.fixed64(&stored.clusterId);
  r.fixed32(&stored.nodeId);
  r.fixed64(&sum);
  if (hash64(std::string_view(bytes).substr(0, 20)) != sum) {
    refuseToStart(path, 20, "the identity file's checksum does not match");
  }
  if (stored.clusterId != id.clusterId || stored.nodeId != id.nodeId) {
    throwDiskError("disk: refusing to start: " + path +
                   " says this data dir belongs to cluster " +
                   std::to_string(stored.clusterId) + " node " + std::to_string(stored.nodeId) +
                   ", but this process is cluster " + std::to_string(id.clusterId) + " node " +
                   std::to_string(id.nodeId) +
                   ". Point the node at its own data dir, or remove this one to start empty.");
  }
}

}  // namespace kvr::disk
