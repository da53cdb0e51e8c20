// WAL throughput on real files: 256-byte records with group commit, and the raw floor
// (one 4 KiB append + fdatasync). Usage: walbench [dir] [seconds per phase]
// Timing uses the wall clock: this is a tool, not part of the deterministic world.
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "disk/disk_storage.h"
#include "disk/posix_fs.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace kvr;
using namespace kvr::disk;

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void cleanDir(FileSystem& fs, const std::string& dir) {
  if (!fs.exists(dir)) return;
  for (const auto& name : fs.list(dir)) fs.remove(joinPath(dir, name));
  ::rmdir(dir.c_str());
}

void rawFloor(FileSystem& fs, const std::string& dir, double seconds) {
  fs.createDir(dir);
  const std::string path = dir + "/raw";
  auto file = fs.open(path, OpenMode::Create);
  std::string block(4096, 'r');
  uint64_t syncs = 0;
  auto start = Clock::now();
  while (secondsSince(start) < seconds) {
    file->append(block);
    file->datasync();
    ++syncs;
  }
  double t = secondsSince(start);
  std::printf("raw floor: %.0f fdatasyncs/s (4 KiB append + fdatasync, %.1f us each)\n",
              syncs / t, 1e6 * t / syncs);
  fs.remove(path);
}

void groupCommit(FileSystem& fs, const std::string& dir, size_t recordsPerFlush,
                 double seconds) {
  cleanDir(fs, dir);
  auto rec = DiskStorage::open(fs, dir, NodeIdentity{1, 1});
  const std::string payload(256, 'p');
  uint64_t seq = 0, records = 0, flushes = 0;
  Index index = 0;
  auto start = Clock::now();
  while (secondsSince(start) < seconds) {
    for (size_t i = 0; i < recordsPerFlush; ++i) {
      PersistBatch b;
      b.seq = ++seq;
      Entry e;
      e.term = 1;
      e.index = ++index;
      e.kind = EntryKind::Command;
      e.data = payload;
      b.entries.push_back(std::move(e));
      rec.storage->persist(std::move(b));
    }
    records += rec.storage->flush().size();
    ++flushes;
  }
  double t = secondsSince(start);
  std::printf("group commit %4zu records/flush: %9.0f records/s  %7.1f MB/s  %7.0f fsyncs/s\n",
              recordsPerFlush, records / t, records * 256.0 / t / 1e6, flushes / t);
  rec.storage = nullptr;
  cleanDir(fs, dir);
}

}  // namespace

int main(int argc, char** argv) {
  std::string base;
  if (argc > 1) {
    base = argv[1];
  } else {
    char tmpl[] = "/tmp/walbench_XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return 1;
    base = tmpl;
  }
  const double seconds = argc > 2 ? std::atof(argv[2]) : 2.0;
  PosixFileSystem fs;
  rawFloor(fs, base + "/raw", seconds);
  cleanDir(fs, base + "/raw");
  for (size_t perFlush : {1, 16, 128, 1024}) groupCommit(fs, base + "/wal", perFlush, seconds);
  if (argc <= 1) ::rmdir(base.c_str());
  return 0;
}
