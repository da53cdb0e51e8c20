#include "disk/recovery_mark.h"

#include "core/hash.h"
#include "core/wire.h"

namespace kvr::disk {
namespace {

constexpr std::string_view kMarkMagic = "KVRREC01";
constexpr size_t kMarkBytes = 8 + 8 + 8 + 4 + 1 + 8;

}  // namespace

void writeRecoveryMark(FileSystem& fs, const std::string& dir, const RecoveryMark& mark) {
  std::string out(kMarkMagic);
  wire::putFixed64(out, mark.untilIndex);
  wire::putFixed64(out, mark.hardState.term);
  wire::putFixed32(out, mark.hardState.vote);
  wire::putU8(out, mark.wipe ? 1 : 0);
  wire::putFixed64(out, hash64(out));
  const std::string path = joinPath(dir, kRecoveryMarkFileName);
  const std::string tmp = path + ".tmp";
  if (fs.exists(tmp)) fs.remove(tmp);
  {
    auto file = fs.open(tmp, OpenMode::Create);
    file->append(out);
    file->datasync();
  }
  fs.rename(tmp, path);
  fs.syncDir(dir);
}

std::optional<RecoveryMark> readRecoveryMark(FileSystem& fs, const std::string& dir) {
  const std::string path = joinPath(dir, kRecoveryMarkFileName);
  if (!fs.exists(path)) return std::nullopt;
  auto file = fs.open(path, OpenMode::Read);
  std::string bytes = file->pread(0, kMarkBytes + 1);
  RecoveryMark mark;
  mark.damaged = true;
  if (bytes.size() != kMarkBytes || std::string_view(bytes).substr(0, 8) != kMarkMagic)
    return mark;
  wire::Reader r(bytes);
  uint8_t wipe = 0;
  uint64_t sum = 0;
  r.expect(kMarkMagic);
  r.fixed64(&mark.untilIndex);
  r.fixed64(&mark.hardState.term);
  r.fixed32(&mark.hardState.vote);
  r.u8(&wipe);
  r.fixed64(&sum);
  if (!r.done() || wipe > 1 ||
      hash64(std::string_view(bytes).substr(0, kMarkBytes - 8)) != sum) {
    return RecoveryMark{0, {}, false, true};
  }
  mark.wipe = wipe == 1;
  mark.damaged = false;
  return mark;
}

void removeRecoveryMark(FileSystem& fs, const std::string& dir) {
  const std::string path = joinPath(dir, kRecoveryMarkFileName);
  if (!fs.exists(path)) return;
  fs.remove(path);
  fs.syncDir(dir);
}

}  // namespace kvr::disk
