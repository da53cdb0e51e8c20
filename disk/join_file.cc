#include "disk/join_file.h"

#include <string_view>

#include "core/hash.h"
#include "core/membership.h"
#include "core/wire.h"

namespace kvr::disk {
namespace {

constexpr std::string_view kJoinMagic = "KVRJOIN1";
constexpr size_t kMaxJoinFileBytes = 8 + 8 + 4 + limits::kMaxConfBytes + 8;

}  // namespace

void writeJoinFile(FileSystem& fs, const std::string& dir, const JoinRecord& record) {
  std::string bytes(kJoinMagic);
  wire::putFixed64(bytes, record.clusterId);
  std::string conf = encodeConf(record.conf);
  wire::putFixed32(bytes, static_cast<uint32_t>(conf.size()));
  bytes += conf;
  wire::putFixed64(bytes, hash64(bytes));
  replaceFileDurably(fs, dir, kJoinFileName, bytes);
}

bool readJoinFile(FileSystem& fs, const std::string& dir, std::optional<JoinRecord>* out,
                  std::string* error) {
  std::string path = joinPath(dir, kJoinFileName);
  out->reset();
  if (!fs.exists(path)) return true;
  uint64_t size = fs.fileSize(path);
  std::string bytes;
  if (size <= kMaxJoinFileBytes) bytes = fs.open(path, OpenMode::Read)->pread(0, size);
  uint64_t clusterId = 0;
  uint32_t length = 0;
  uint64_t sum = 0;
  JoinRecord record;
  bool ok = bytes.size() == size && size > 8 &&
            bytes.compare(0, kJoinMagic.size(), kJoinMagic) == 0;
  if (ok) {
    wire::Reader body(std::string_view(bytes).substr(kJoinMagic.size()));
    ok = body.fixed64(&clusterId) && body.fixed32(&length) && length <= body.remaining() &&
         length <= limits::kMaxConfBytes;
    if (ok) {
      std::string_view conf = std::string_view(bytes).substr(kJoinMagic.size() + 12, length);
      wire::Reader tail(std::string_view(bytes).substr(kJoinMagic.size() + 12 + length));
      ok = tail.fixed64(&sum) && tail.done() &&
           sum == hash64(std::string_view(bytes).substr(0, kJoinMagic.size() + 12 + length)) &&
           decodeConf(conf, &record.conf) && clusterId != 0;
    }
  }
  if (!ok) {
    *error = path + " is damaged (" + std::to_string(size) +
             " bytes that are not a join record); it holds the configuration this node "
             "joined with: remove the data dir and join the node again";
    return false;
  }
  record.clusterId = clusterId;
  *out = std::move(record);
  return true;
}

}  // namespace kvr::disk
