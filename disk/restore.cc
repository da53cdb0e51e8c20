#include "disk/restore.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include <kj/debug.h>

#include "core/kv.h"
#include "core/limits.h"
#include "disk/disk_error.h"
#include "disk/disk_storage.h"
#include "disk/posix_fs.h"

namespace kvr::disk {

namespace {

namespace stdfs = std::filesystem;

[[noreturn]] void refuse(const std::string& message) { throwDiskError("restore: " + message); }

// "a/b/" and "a/./b" -> "a/b": the dir's own name, so that siblings can be named after it.
std::string normalized(const std::string& dir) {
  stdfs::path p = stdfs::path(dir).lexically_normal();
  if (!p.has_filename() && p.has_parent_path() && p != p.root_path()) p = p.parent_path();
  return p.string();
}

std::string parentOf(const std::string& dir) {
  stdfs::path parent = stdfs::path(normalized(dir)).parent_path();
  return parent.empty() ? "." : parent.string();
}

// Removes a temp dir this code made: only regular files directly inside it.
void removeTempDir(const std::string& dir) {
  std::error_code ec;
  if (!stdfs::exists(dir, ec)) return;
  for (const auto& entry : stdfs::directory_iterator(dir, ec)) {
    if (entry.is_regular_file(ec)) stdfs::remove(entry.path(), ec);
  }
  stdfs::remove(dir, ec);  // fails (and is left) if anything else is inside
}

}  // namespace

RestoreResult restoreDataDir(const std::string& backupPath, const std::string& dataDir,
                             const NodeIdentity& id, const ConfState& conf) {
  KJ_REQUIRE(std::find(conf.voters.begin(), conf.voters.end(), id.nodeId) != conf.voters.end(),
             "this node is not in the new membership");

  // 1. The backup, verified in full before anything is created.
  std::string bytes;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { bytes = readWholeFile(backupPath); })) {
    refuse(e->getDescription().cStr());
  }
  KvConfig kvConfig;
  kvConfig.maxSessions = limits::kMaxSessions;  // whatever the old cluster allowed
  KvStore store(kvConfig);
  BackupCheck check = checkBackup(bytes, &store);
  if (!check.ok) refuse(backupPath + ": " + check.error + "; nothing was written");
  RestoreResult result;
  result.header = check.header;
  result.keys = store.size();
  result.droppedSessions = store.sessionCount();
  store.dropSessions();
  bytes.clear();
  bytes.shrink_to_fit();

  // 2. The target must be new.
  const std::string target = normalized(dataDir);
  if (target.empty() || target == "/" || target == "." || target == "..") {
    refuse("data dir '" + dataDir + "' cannot be restored into; name a new directory");
  }
  std::error_code ec;
  const stdfs::file_status st = stdfs::status(dataDir, ec);
  if (stdfs::exists(st)) {
    if (!stdfs::is_directory(st)) refuse(dataDir + " exists and is not a directory");
    if (!stdfs::is_empty(dataDir, ec) || ec) {
      refuse("data dir " + dataDir +
             " is not empty; restore only into a new or empty "
             "directory (move the old one away first)");
    }
  }

  // 3. Build it next to the target, verify it, rename it into place.
  const std::string tmp = target + ".restore.tmp";
  removeTempDir(tmp);  // a leftover of an interrupted restore
  if (stdfs::exists(tmp, ec))
    refuse(tmp + " exists and is not a leftover of a restore; remove it");
  PosixFileSystem fs;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                {
                  DataDirLock lock(tmp);  // creates tmp; keeps two restores apart
                  Snapshot snap;
                  snap.meta = SnapshotMeta{check.header.index, check.header.term, conf};
                  snap.data = std::make_shared<const std::string>(store.snapshot());
                  auto opened = DiskStorage::open(fs, tmp, id);
                  KJ_REQUIRE(opened.state.snapshot.meta.index == 0 &&
                                 opened.state.entries.empty(),
                             "the temp dir was not empty");
                  const std::optional<HardState> wantHardState = HardState{check.header.term,
                                                                           kNoNode,
                                                                           check.header.index};
                  PersistBatch batch;
                  batch.seq = 1;
                  batch.hardState = wantHardState;
                  batch.snapshot = snap;
                  batch.resetLog = true;
                  opened.storage->persist(std::move(batch));
                  opened.storage->flush();
                  opened.storage = nullptr;

                  // Read it back the way a starting node will.
                  auto again = DiskStorage::open(fs, tmp, id);
                  const Snapshot& got = again.state.snapshot;
                  KJ_REQUIRE(got.meta == snap.meta && got.data != nullptr &&
                                 *got.data == *snap.data && again.state.entries.empty() &&
                                 again.state.hardState == *wantHardState,
                             "the restored data dir does not read back as written");
                }
                fs.remove(joinPath(tmp, DataDirLock::kFileName));
                fs.syncDir(tmp);
                fs.rename(tmp, target);  // replaces an empty dir atomically
                fs.syncDir(parentOf(target));
              })) {
    removeTempDir(tmp);
    refuse("cannot create data dir " + dataDir + ": " + e->getDescription().cStr() +
           "; nothing was left behind");
  }
  return result;
}

}  // namespace kvr::disk
