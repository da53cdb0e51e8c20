#include "disk/peer_incarnations.h"

#include <string_view>
#include <utility>

#include <kj/debug.h>

#include "core/hash.h"
#include "core/wire.h"
#include "disk/disk_error.h"

namespace kvr::disk {
namespace {

constexpr std::string_view kPeersMagic = "KVRPEER1";
constexpr size_t kRecordBytes = 4 + 8;
constexpr size_t kMaxFileBytes = kPeersMagic.size() + 4 +
                                 PeerIncarnations::kMaxRecords * kRecordBytes + 8;

}  // namespace

PeerIncarnations::PeerIncarnations(FileSystem& fs, std::string dir)
    : fs_(fs), dir_(std::move(dir)) {
  const std::string path = joinPath(dir_, kPeerIncarnationsFileName);
  if (!fs_.exists(path)) return;
  const uint64_t size = fs_.fileSize(path);
  if (size > kMaxFileBytes) refuseToStart(path, 0, "the peers file is too large");
  const std::string bytes = fs_.open(path, OpenMode::Read)->pread(0, size);
  wire::Reader r(bytes);
  uint32_t count = 0;
  if (bytes.size() != size || !r.expect(kPeersMagic) || !r.fixed32(&count) ||
      count > kMaxRecords || size != kPeersMagic.size() + 4 + count * kRecordBytes + 8) {
    refuseToStart(path, 0, "the peers file is malformed");
  }
  NodeId last = kNoNode;
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t id = 0;
    uint64_t incarnation = 0;
    r.fixed32(&id);
    r.fixed64(&incarnation);
    if (id <= last || incarnation == 0) refuseToStart(path, 0, "the peers file is malformed");
    known_[id] = incarnation;
    last = id;
  }
  uint64_t sum = 0;
  r.fixed64(&sum);
  if (sum != hash64(std::string_view(bytes).substr(0, size - 8))) {
    refuseToStart(path, size - 8, "the peers file's checksum does not match");
  }
}

PeerIncarnations::Seen PeerIncarnations::check(NodeId peer, uint64_t incarnation,
                                               uint64_t* known) {
  if (incarnation == 0) return Seen::Unchecked;
  auto it = known_.find(peer);
  if (it != known_.end()) {
    if (known != nullptr) *known = it->second;
    return it->second == incarnation ? Seen::Same : Seen::Different;
  }
  KJ_REQUIRE(known_.size() < kMaxRecords, "too many peers recorded", peer);
  known_[peer] = incarnation;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { save(); })) {
    known_.erase(peer);
    kj::throwFatalException(kj::mv(*e));
  }
  if (known != nullptr) *known = incarnation;
  return Seen::First;
}

void PeerIncarnations::forget(NodeId peer) {
  auto it = known_.find(peer);
  if (it == known_.end()) return;
  const uint64_t incarnation = it->second;
  known_.erase(it);
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { save(); })) {
    known_[peer] = incarnation;
    kj::throwFatalException(kj::mv(*e));
  }
}

std::vector<NodeId> PeerIncarnations::ids() const {
  std::vector<NodeId> out;
  for (const auto& [id, incarnation] : known_) out.push_back(id);
  return out;
}

void PeerIncarnations::save() {
  std::string bytes(kPeersMagic);
  wire::putFixed32(bytes, static_cast<uint32_t>(known_.size()));
  for (const auto& [id, incarnation] : known_) {
    wire::putFixed32(bytes, id);
    wire::putFixed64(bytes, incarnation);
  }
  wire::putFixed64(bytes, hash64(bytes));
  replaceFileDurably(fs_, dir_, kPeerIncarnationsFileName, bytes);
}

}  // namespace kvr::disk
