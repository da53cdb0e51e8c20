// The data dir's record of the incarnation each peer presented (file `peers`): the first
// one seen for a node id is kept, durably, before the connection is accepted. A peer that
// later presents another incarnation under the same id is a data dir that was wiped or
// replaced (disk/identity.h): it forgot the votes and the entries it acknowledged, and
// Raft's safety rests on neither being forgotten, so it may not take part again as that
// member (net/raft_service.h refuses it; it stops, net/peer_transport.h).
//
// A member that a committed configuration removed is forgotten (forget()): its id may
// join again later with a new data dir (kvnode --join), and ids are few.
//
// Format: "KVRPEER1", u32 count (at most kMaxRecords), then per
// peer u32 node id and u64 incarnation in ascending id order, u64 XXH3 of everything
// before it; integers little-endian. Incarnation 0 (a peer whose data dir predates
// incarnations) is never recorded or compared.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/types.h"
#include "disk/file_system.h"

namespace kvr::disk {

constexpr const char* kPeerIncarnationsFileName = "peers";

class PeerIncarnations {
 public:
  // A bound on the file: only members are kept, and there are at most limits::kMaxNodes.
  static constexpr size_t kMaxRecords = 64;

  enum class Seen : uint8_t {
    Unchecked,  // incarnation 0: nothing to compare
    First,      // recorded now (durably)
    Same,       // as recorded
    Different,  // another incarnation than recorded: *known says which
  };

  // Loads `dir`/peers (none: nothing known). Throws kj::Exception naming the file when it
  // is damaged.
  PeerIncarnations(FileSystem& fs, std::string dir);

  // Compares `incarnation` with the one recorded for `peer`, recording it if there is
  // none. Throws if the write fails (the caller must not accept the peer then).
  Seen check(NodeId peer, uint64_t incarnation, uint64_t* known = nullptr);

  // Drops the record of `peer` (durably), if there is one. Throws if the write fails.
  void forget(NodeId peer);

  size_t size() const { return known_.size(); }
  std::vector<NodeId> ids() const;

 private:
  void save();

  FileSystem& fs_;
  std::string dir_;
  std::map<NodeId, uint64_t> known_;
};

}  // namespace kvr::disk
