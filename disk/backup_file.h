// Backup files: what `kvctl snapshot save` writes and `kvnode --restore` and
// `kvctl snapshot status` read. One consistent copy of a cluster's KV state.
//
// File layout (fixed-width little-endian, core/wire.h):
//   "KVRBACKP"                8 bytes magic
//   u32 format version        kBackupFormatVersion (1)
//   u64 cluster id            of the cluster the backup was taken from
//   u32 node id               the node that served it
//   u64 applied index         the KV state is exactly the state after this log index
//   u64 term                  term of the entry at that index
//   u64 payload size          bytes that follow
//   payload                   the KV snapshot bytes (core/kv.cc format, its own checksum)
//   u64 XXH3-64 (core/hash.h) of every byte before it
// A reader refuses: a file shorter than the header, a bad magic, an unknown version, a
// file shorter than the header promises ("truncated at byte N"), bytes after the
// checksum, a checksum mismatch, or a payload that is not a KV snapshot at the header's
// index.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/kv.h"
#include "core/types.h"

namespace kvr::disk {

constexpr std::string_view kBackupMagic = "KVRBACKP";
constexpr uint32_t kBackupFormatVersion = 1;
constexpr size_t kBackupHeaderBytes = 8 + 4 + 8 + 4 + 8 + 8 + 8;
constexpr size_t kBackupChecksumBytes = 8;

struct BackupHeader {
  uint32_t version = kBackupFormatVersion;
  uint64_t clusterId = 0;
  NodeId nodeId = kNoNode;
  Index index = 0;
  Term term = 0;
  uint64_t size = 0;  // payload bytes
};

// The whole file for `header` (its size is taken from `payload`) and `payload`.
std::string encodeBackup(BackupHeader header, std::string_view payload);

struct BackupCheck {
  bool ok = false;
  std::string error;        // when !ok: what is wrong, e.g. "truncated at byte 17: ..."
  bool headerRead = false;  // the header fields below were decoded (magic and version good)
  bool checksumOk = false;
  BackupHeader header;
  std::string_view payload;  // into the input; valid when ok
};

// Verifies a backup file's bytes: structure, checksum, and that the payload restores
// into `store` (if non-null) at the header's index. Never throws.
BackupCheck checkBackup(std::string_view bytes, KvStore* store = nullptr);

// Reads a whole file (throws kj::Exception naming it when it cannot be read).
std::string readWholeFile(const std::string& path);

// Writes `bytes` to `path` atomically: PATH.tmp, fdatasync, rename, fsync of the
// directory. On failure removes the temp file and throws kj::Exception naming the path.
void writeFileAtomically(const std::string& path, std::string_view bytes);

}  // namespace kvr::disk
