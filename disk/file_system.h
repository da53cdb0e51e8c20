// The small synchronous file interface the WAL and snapshot store are written against.
// PosixFileSystem (disk/posix_fs.h) is the real one; the simulator's SimFileSystem
// (sim/sim_fs.h) stands under the very same storage code with fault injection.
//
// Errors: every method reports failure by throwing kj::Exception (never by a return
// value). Failures split in two kinds, told apart by the method that threw:
//  - Mutating methods (File::append, File::datasync, File::truncate, create, rename,
//    remove, syncDir): the durable state is now unknown. The caller must fail-stop: it
//    must never retry an fsync and carry on (after a failed fsync the kernel may have
//    dropped the dirty pages). DiskStorage turns any such exception into a dead
//    storage that reports nothing durable ever again.
//  - Reading methods (open for read, pread, list, size, exists): nothing changed on
//    disk; recovery turns them into a refusal to start.
// Paths are plain strings "dir/name"; a directory is named without a trailing slash.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <kj/memory.h>

namespace kvr::disk {

class File {
 public:
  virtual ~File() = default;
  virtual uint64_t size() = 0;
  // Writes `bytes` at the end of the file. Not durable until datasync().
  virtual void append(std::string_view bytes) = 0;
  // Reads up to `length` bytes at `offset`; fewer only at end of file.
  virtual std::string pread(uint64_t offset, size_t length) = 0;
  // fdatasync: the file's content (not its directory entry) is durable on return.
  virtual void datasync() = 0;
  // Cuts the file to `size` bytes (size <= current size). Not durable until datasync().
  virtual void truncate(uint64_t size) = 0;
  // A hint that promises nothing about durability: start writing what was appended
  // since the last call to the disk, and wait until what the call before that started
  // is written. A long file written in one go and hinted every few MB then never holds
  // more than about two hints' worth of dirty pages, so its final datasync() is short
  // and never stalls the other files' fsyncs on the same disk behind hundreds of MB.
  // The default does nothing (the simulated file system's pages are its own).
  virtual void writeBehind() {}
};

enum class OpenMode : uint8_t {
  Read,    // existing file, read only
  Append,  // existing file, read + append
  Create,  // new file (fails if it exists), read + append
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;
  // Create: the new directory entry is durable only after syncDir(parent).
  virtual kj::Own<File> open(const std::string& path, OpenMode mode) = 0;
  // Atomically replaces `to` if it exists. Durable only after syncDir of the parent.
  virtual void rename(const std::string& from, const std::string& to) = 0;
  virtual void remove(const std::string& path) = 0;
  // Makes the directory's entries (creates, renames, removes) durable.
  virtual void syncDir(const std::string& dir) = 0;
  // Creates the directory if it is missing (and its parents). Durable at return.
  virtual void createDir(const std::string& dir) = 0;
  // Names (not paths) of the regular files in `dir`, sorted.
  virtual std::vector<std::string> list(const std::string& dir) = 0;
  virtual uint64_t fileSize(const std::string& path) = 0;
  virtual bool exists(const std::string& path) = 0;
};

inline std::string joinPath(const std::string& dir, std::string_view name) {
  std::string path = dir;
  path += '/';
  path += name;
  return path;
}

// Replaces `dir`/`name` with `bytes` durably: a temp file beside it, fdatasync, rename,
// fsync of the dir. A crash leaves the old file or the new one, and perhaps the temp.
inline void replaceFileDurably(FileSystem& fs, const std::string& dir, std::string_view name,
                               std::string_view bytes) {
  const std::string path = joinPath(dir, name);
  const std::string tmp = path + ".tmp";
  if (fs.exists(tmp)) fs.remove(tmp);
  {
    kj::Own<File> file = fs.open(tmp, OpenMode::Create);
    file->append(bytes);
    file->datasync();
  }
  fs.rename(tmp, path);
  fs.syncDir(dir);
}

}  // namespace kvr::disk
