// The simulator's in-memory FileSystem: deterministic, with disk faults driven by the
// simulator's kvr::Rng.
//
// Model. Every file (inode) keeps its durable bytes and its current bytes; datasync()
// makes current durable. The namespace is kept twice as well: the live entries and the
// durable entries; syncDir(dir) makes dir's live entries durable. Directories
// themselves are always durable (createDir is the only way to make one). crash() throws
// away everything not durable: the namespace reverts to its durable entries and each
// file to its durable bytes -- or, in torn mode, to its durable bytes overlaid with a
// random prefix of the in-flight writes' 512-byte sectors, followed by old bytes or
// garbage. File handles opened before a crash throw if used after it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "core/rng.h"
#include "disk/file_system.h"

namespace kvr::sim {

struct SimFsFaultStats {
  uint64_t crashes = 0;
  uint64_t tornFiles = 0;       // files whose unsynced writes were partly kept at a crash
  uint64_t lostFileWrites = 0;  // files that lost unsynced bytes at a crash
  uint64_t lostDirOps = 0;      // directory entries reverted at a crash
  uint64_t bitFlips = 0;
  uint64_t lostSectors = 0;         // synced sectors that read back as zeros
  uint64_t misdirectedSectors = 0;  // synced sectors that landed elsewhere
  uint64_t writeErrors = 0;
  uint64_t syncErrors = 0;

  uint64_t total() const {
    return crashes + tornFiles + lostFileWrites + lostDirOps + bitFlips + lostSectors +
           misdirectedSectors + writeErrors + syncErrors;
  }
};

class SimFileSystem final : public disk::FileSystem {
 public:
  static constexpr uint64_t kSectorBytes = 512;

  // `rng` must outlive this object; every random fault decision draws from it.
  explicit SimFileSystem(Rng& rng) : rng_(rng) {}

  // ---- disk::FileSystem ----
  kj::Own<disk::File> open(const std::string& path, disk::OpenMode mode) override;
  void rename(const std::string& from, const std::string& to) override;
  void remove(const std::string& path) override;
  void syncDir(const std::string& dir) override;
  void createDir(const std::string& dir) override;
  std::vector<std::string> list(const std::string& dir) override;
  uint64_t fileSize(const std::string& path) override;
  bool exists(const std::string& path) override;

  // ---- faults ----
  // Loses everything not durable. With `torn`, each file keeps a random sector prefix
  // of its unsynced writes, followed by old bytes or garbage.
  void crash(bool torn);
  // Crashes (torn or not) right after the `ops`-th mutating operation from now
  // (append, datasync, truncate, create, rename, remove, syncDir); that operation then
  // throws kj::Exception "sim-fs: crashed". The caller discards everything built on
  // this file system's handles and recovers from it.
  void armCrash(uint64_t ops, bool torn);
  void disarmCrash() { crashCountdown_.reset(); }
  // Flips one random bit of the byte at `offset` (durable and live: it is on the platter).
  void flipBit(const std::string& path, uint64_t offset);
  // A lost write: the sector `sector` (512 bytes, or what the file holds of it) reads
  // back as zeros although its fsync succeeded.
  void loseSector(const std::string& path, uint64_t sector);
  // A misdirected write: the bytes meant for sector `from` of `fromPath` landed on
  // sector `to` of `toPath` instead (overwriting it); sector `from` reads as zeros.
  void misdirectSector(const std::string& fromPath, uint64_t from, const std::string& toPath,
                       uint64_t to);
  void failNextWrite() { failNextWrite_ = true; }
  void failNextSync() { failNextSync_ = true; }
  void clearInjectedErrors() { failNextWrite_ = failNextSync_ = false; }
  // Independent chance per append / per datasync or syncDir of an injected error.
  void setErrorRates(double writeError, double syncError) {
    writeErrorRate_ = writeError;
    syncErrorRate_ = syncError;
  }

  // ---- observation ----
  const SimFsFaultStats& faults() const { return faults_; }
  uint64_t mutatingOps() const { return mutatingOps_; }
  // Live bytes of a file (tests).
  std::string contents(const std::string& path) const;

 private:
  struct Inode {
    std::string durable;
    std::string current;
  };
  class SimFile;

  std::shared_ptr<Inode> liveInode(const std::string& path, const char* op) const;
  bool injectWriteError();
  bool injectSyncError();
  // Counts one mutating operation (already applied) and crashes if one is armed.
  void afterMutation();
  std::string crashedContent(const Inode& inode, bool torn);
  void requireDir(const std::string& path, const char* op) const;

  Rng& rng_;
  std::map<std::string, std::shared_ptr<Inode>> live_;
  std::map<std::string, std::shared_ptr<Inode>> durable_;
  std::set<std::string> dirs_;
  uint64_t epoch_ = 0;  // bumps at each crash, invalidating handles
  uint64_t mutatingOps_ = 0;
  std::optional<uint64_t> crashCountdown_;
  bool crashTorn_ = false;
  bool failNextWrite_ = false;
  bool failNextSync_ = false;
  double writeErrorRate_ = 0;
  double syncErrorRate_ = 0;
  SimFsFaultStats faults_;
};

}  // namespace kvr::sim
