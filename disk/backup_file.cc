#include "disk/backup_file.h"

#include <algorithm>
#include <cstdio>

#include <kj/debug.h>

#include "core/hash.h"
#include "core/wire.h"
#include "disk/disk_error.h"
#include "disk/posix_fs.h"

namespace kvr::disk {

namespace {

std::string hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// kj describes a failed syscall as "<call>: <strerror>; <call name>; <params>"; an
// operator wants only the strerror part.
std::string syscallError(const kj::Exception& e) {
  std::string text = e.getDescription().cStr();
  size_t colon = text.find("): ");
  if (colon == std::string::npos) return text;
  text.erase(0, colon + 3);
  size_t semi = text.find(';');
  if (semi != std::string::npos) text.resize(semi);
  return text;
}

std::string parentDir(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

std::string encodeBackup(BackupHeader header, std::string_view payload) {
  std::string out(kBackupMagic);
  out.reserve(kBackupHeaderBytes + payload.size() + kBackupChecksumBytes);
  wire::putFixed32(out, header.version);
  wire::putFixed64(out, header.clusterId);
  wire::putFixed32(out, header.nodeId);
  wire::putFixed64(out, header.index);
  wire::putFixed64(out, header.term);
  wire::putFixed64(out, payload.size());
  KJ_ASSERT(out.size() == kBackupHeaderBytes);
  out.append(payload.data(), payload.size());
  wire::putFixed64(out, hash64(out));
  return out;
}

BackupCheck checkBackup(std::string_view bytes, KvStore* store) {
  BackupCheck c;
  auto fail = [&c](std::string why) {
    c.ok = false;
    c.error = std::move(why);
    return c;
  };
  // The magic first, on whatever is there: a short file of another kind is "not a backup".
  const size_t magicSeen = std::min(bytes.size(), kBackupMagic.size());
  if (bytes.substr(0, magicSeen) != kBackupMagic.substr(0, magicSeen)) {
    return fail("bad magic: not a kvraft backup file (it does not start with \"" +
                std::string(kBackupMagic) + "\")");
  }
  if (bytes.size() < kBackupHeaderBytes) {
    return fail("truncated at byte " + std::to_string(bytes.size()) + ": the header alone is " +
                std::to_string(kBackupHeaderBytes) + " bytes");
  }
  wire::Reader in(bytes.substr(0, kBackupHeaderBytes));
  BackupHeader& h = c.header;
  uint32_t node = 0;
  in.expect(kBackupMagic);
  in.fixed32(&h.version);
  in.fixed64(&h.clusterId);
  in.fixed32(&node);
  in.fixed64(&h.index);
  in.fixed64(&h.term);
  in.fixed64(&h.size);
  KJ_ASSERT(in.done());
  h.nodeId = node;
  if (h.version != kBackupFormatVersion) {
    return fail("format version " + std::to_string(h.version) +
                " is not supported (this build "
                "reads version " +
                std::to_string(kBackupFormatVersion) + ")");
  }
  c.headerRead = true;
  const uint64_t available = bytes.size() - kBackupHeaderBytes;
  if (h.size > available || available - h.size < kBackupChecksumBytes) {
    // Saturating: a corrupt size field must not overflow the expected length.
    const uint64_t expected = h.size > UINT64_MAX - kBackupHeaderBytes - kBackupChecksumBytes
                                  ? UINT64_MAX
                                  : kBackupHeaderBytes + h.size + kBackupChecksumBytes;
    return fail("truncated at byte " + std::to_string(bytes.size()) + ": the header promises " +
                (expected == UINT64_MAX ? std::string("more") : std::to_string(expected)) +
                " bytes (a payload of " + std::to_string(h.size) + " bytes and a checksum)");
  }
  const size_t end = kBackupHeaderBytes + static_cast<size_t>(h.size);
  if (available - h.size > kBackupChecksumBytes) {
    return fail(std::to_string(available - h.size - kBackupChecksumBytes) +
                " unexpected bytes after the checksum at byte " +
                std::to_string(end + kBackupChecksumBytes));
  }
  uint64_t stored = 0;
  wire::Reader(bytes.substr(end)).fixed64(&stored);
  const uint64_t computed = hash64(bytes.substr(0, end));
  if (stored != computed) {
    return fail("checksum mismatch (stored " + hex(stored) + ", computed " + hex(computed) +
                "): the file is corrupt");
  }
  c.checksumOk = true;
  c.payload = bytes.substr(kBackupHeaderBytes, static_cast<size_t>(h.size));
  if (store != nullptr) {
    if (!store->restore(c.payload)) {
      return fail("the payload is not a valid KV snapshot");
    }
    if (store->appliedIndex() != h.index) {
      return fail("the payload is a KV snapshot at index " +
                  std::to_string(store->appliedIndex()) + ", but the header says index " +
                  std::to_string(h.index));
    }
  }
  c.ok = true;
  return c;
}

std::string readWholeFile(const std::string& path) {
  PosixFileSystem fs;
  std::string out;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                auto file = fs.open(path, OpenMode::Read);
                uint64_t size = file->size();
                out = file->pread(0, static_cast<size_t>(size));
              })) {
    throwDiskError("cannot read " + path + ": " + syscallError(*e));
  }
  return out;
}

void writeFileAtomically(const std::string& path, std::string_view bytes) {
  PosixFileSystem fs;
  const std::string tmp = path + ".tmp";
  bool created = false;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                if (fs.exists(tmp)) fs.remove(tmp);  // a leftover of an interrupted save
                {
                  auto file = fs.open(tmp, OpenMode::Create);
                  created = true;
                  file->append(bytes);
                  file->datasync();
                }
                fs.rename(tmp, path);
                created = false;
                fs.syncDir(parentDir(path));
              })) {
    if (created) {
      kj::runCatchingExceptions([&]() { fs.remove(tmp); });
    }
    throwDiskError("cannot write " + path + ": " + syscallError(*e));
  }
}

}  // namespace kvr::disk
