// Where each member of the cluster serves clients (its KvService address, HOST:PORT).
//
// A node advertises its own client address to its peers in the peer hello
// (schemas/raft.capnp: the caller's in the request, the receiver's in the answer), so
// every node learns the client address of every peer it talks to without any flag
// listing them. A follower puts its leader's address into NotLeader replies
// (kv.capnp Reply.leaderAddr), and the client library goes there even when the leader
// is not among its configured endpoints.
//
// Why advertise rather than configure: the addresses then cannot disagree with the
// nodes' own flags, nothing has to be repeated on every machine, and a node added later
// (membership changes) is known as soon as it connects. A follower always knows its
// leader's address while it knows the leader: it learns who leads from the leader's
// messages, which arrive on a connection the leader opened with a hello.
#pragma once

#include <cstddef>
#include <map>
#include <string>

#include "core/types.h"

namespace kvr::net {

class ClientAddresses {
 public:
  // An advertised address longer than this is ignored (it would be copied into replies).
  static constexpr size_t kMaxAddressBytes = 255;

  // What this node advertises ("" = nothing, e.g. it listens on a wildcard address and
  // was given no --advertise-client-addr).
  void setSelf(std::string address) { self_ = std::move(address); }
  const std::string& self() const { return self_; }

  // A peer's hello (or its answer to ours) named this address. An empty, oversized or
  // port-less one is ignored and the previous one kept. True if the address is new or
  // changed (the node logs it).
  bool learn(NodeId peer, const std::string& address) {
    if (address.empty() || address.size() > kMaxAddressBytes) return false;
    size_t colon = address.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) return false;
    auto [it, inserted] = peers_.try_emplace(peer, address);
    if (inserted) return true;
    if (it->second == address) return false;
    it->second = address;
    return true;
  }

  // The client address of `node` ("" if unknown or kNoNode).
  std::string of(NodeId node) const {
    auto it = peers_.find(node);
    return it == peers_.end() ? std::string() : it->second;
  }

 private:
  std::string self_;
  std::map<NodeId, std::string> peers_;
};

}  // namespace kvr::net
