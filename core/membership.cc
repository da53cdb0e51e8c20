#include "core/membership.h"

#include <algorithm>

#include "core/limits.h"
#include "core/wire.h"

namespace kvr {

namespace {

constexpr uint8_t kConfVersion = 1;

bool sortedUnique(const std::vector<NodeId>& ids) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] == kNoNode || ids[i] > limits::kMaxNodes || (i > 0 && ids[i] <= ids[i - 1]))
      return false;
  }
  return true;
}

bool contains(const std::vector<NodeId>& ids, NodeId id) {
  return std::binary_search(ids.begin(), ids.end(), id);
}

void insertSorted(std::vector<NodeId>& ids, NodeId id) {
  ids.insert(std::lower_bound(ids.begin(), ids.end(), id), id);
}

void erase(std::vector<NodeId>& ids, NodeId id) {
  auto it = std::lower_bound(ids.begin(), ids.end(), id);
  if (it != ids.end() && *it == id) ids.erase(it);
}

bool validAddr(const std::string& a) { return !a.empty() && a.size() <= limits::kMaxAddrBytes; }

}  // namespace

const char* confChangeTypeName(ConfChangeType t) {
  switch (t) {
    case ConfChangeType::AddLearner: return "add-learner";
    case ConfChangeType::Promote: return "promote";
    case ConfChangeType::Remove: return "remove";
  }
  return "?";
}

const char* confChangeErrorText(ConfChangeError e) {
  switch (e) {
    case ConfChangeError::None: return "ok";
    case ConfChangeError::NotLeader: return "not the leader";
    case ConfChangeError::TransferInProgress:
      return "a leadership transfer is under way; retry shortly";
    case ConfChangeError::NotReady:
      return "the new leader has not committed an entry of its term yet; retry shortly";
    case ConfChangeError::InProgress:
      return "another membership change is in progress (not committed yet); retry when it is";
    case ConfChangeError::InvalidId: return "the node id must be 1..7";
    case ConfChangeError::IdExists: return "a member with this id already exists";
    case ConfChangeError::UnknownNode: return "no member has this id";
    case ConfChangeError::NotLearner: return "the member is already a voter";
    case ConfChangeError::LearnerLags:
      return "the learner has not caught up with the leader's log yet; retry when it has";
    case ConfChangeError::LastVoter: return "cannot remove the last voter";
    case ConfChangeError::TooManyNodes:
      return "the cluster already has the maximum of 7 members";
    case ConfChangeError::AddressInUse: return "another member already uses this address";
    case ConfChangeError::BadAddress:
      return "a member needs a raft and a client address of 1..256 bytes";
  }
  return "?";
}

bool isVoterIn(const ConfState& c, NodeId id) { return contains(c.voters, id); }
bool isLearnerIn(const ConfState& c, NodeId id) { return contains(c.learners, id); }
bool isMemberOf(const ConfState& c, NodeId id) {
  return isVoterIn(c, id) || isLearnerIn(c, id);
}

const MemberAddr* addrOf(const ConfState& c, NodeId id) {
  for (const MemberAddr& a : c.addrs) {
    if (a.id == id) return &a;
  }
  return nullptr;
}

bool validConf(const ConfState& c) {
  if (c.voters.empty() || c.voters.size() + c.learners.size() > limits::kMaxNodes) return false;
  if (!sortedUnique(c.voters) || !sortedUnique(c.learners)) return false;
  for (NodeId l : c.learners) {
    if (contains(c.voters, l)) return false;
  }
  for (size_t i = 0; i < c.addrs.size(); ++i) {
    const MemberAddr& a = c.addrs[i];
    if (!isMemberOf(c, a.id) || (i > 0 && a.id <= c.addrs[i - 1].id)) return false;
    if (a.raftAddr.size() > limits::kMaxAddrBytes ||
        a.clientAddr.size() > limits::kMaxAddrBytes)
      return false;
  }
  return true;
}

ConfChangeError applyConfChange(const ConfState& cur, const ConfChange& cc, ConfState* out) {
  if (cc.id == kNoNode || cc.id > limits::kMaxNodes) return ConfChangeError::InvalidId;
  ConfState next = cur;
  switch (cc.type) {
    case ConfChangeType::AddLearner: {
      if (isMemberOf(cur, cc.id)) return ConfChangeError::IdExists;
      if (cur.voters.size() + cur.learners.size() >= limits::kMaxNodes)
        return ConfChangeError::TooManyNodes;
      if (!validAddr(cc.raftAddr) || !validAddr(cc.clientAddr))
        return ConfChangeError::BadAddress;
      for (const MemberAddr& a : cur.addrs) {
        if (a.raftAddr == cc.raftAddr || a.clientAddr == cc.clientAddr ||
            a.raftAddr == cc.clientAddr || a.clientAddr == cc.raftAddr)
          return ConfChangeError::AddressInUse;
      }
      insertSorted(next.learners, cc.id);
      MemberAddr addr{cc.id, cc.raftAddr, cc.clientAddr};
      auto pos = std::find_if(next.addrs.begin(), next.addrs.end(),
                              [&](const MemberAddr& a) { return a.id > cc.id; });
      next.addrs.insert(pos, std::move(addr));
      break;
    }
    case ConfChangeType::Promote:
      if (!isMemberOf(cur, cc.id)) return ConfChangeError::UnknownNode;
      if (isVoterIn(cur, cc.id)) return ConfChangeError::NotLearner;
      erase(next.learners, cc.id);
      insertSorted(next.voters, cc.id);
      break;
    case ConfChangeType::Remove:
      if (!isMemberOf(cur, cc.id)) return ConfChangeError::UnknownNode;
      if (cur.voters.size() == 1 && cur.voters[0] == cc.id) return ConfChangeError::LastVoter;
      erase(next.voters, cc.id);
      erase(next.learners, cc.id);
      next.addrs.erase(std::remove_if(next.addrs.begin(), next.addrs.end(),
                                      [&](const MemberAddr& a) { return a.id == cc.id; }),
                       next.addrs.end());
      break;
  }
  if (!validConf(next)) return ConfChangeError::BadAddress;
  *out = std::move(next);
  return ConfChangeError::None;
}

// version u8, voter count, voters, learner count, learners, addr count,
// (id, raft addr, client addr)...; every integer a varint.
std::string encodeConf(const ConfState& c) {
  std::string out;
  wire::putU8(out, kConfVersion);
  wire::putVarint(out, c.voters.size());
  for (NodeId v : c.voters) wire::putVarint(out, v);
  wire::putVarint(out, c.learners.size());
  for (NodeId l : c.learners) wire::putVarint(out, l);
  wire::putVarint(out, c.addrs.size());
  for (const MemberAddr& a : c.addrs) {
    wire::putVarint(out, a.id);
    wire::putBytes(out, a.raftAddr);
    wire::putBytes(out, a.clientAddr);
  }
  return out;
}

bool decodeConf(std::string_view bytes, ConfState* out) {
  wire::Reader r(bytes);
  uint8_t version = 0;
  if (!r.u8(&version) || version != kConfVersion) return false;
  ConfState c;
  auto ids = [&](std::vector<NodeId>* v) {
    uint64_t n = 0;
    if (!r.varint(&n) || n > limits::kMaxNodes) return false;
    for (uint64_t i = 0; i < n; ++i) {
      uint32_t id = 0;
      if (!r.varint32(&id)) return false;
      v->push_back(id);
    }
    return true;
  };
  if (!ids(&c.voters) || !ids(&c.learners)) return false;
  uint64_t n = 0;
  if (!r.varint(&n) || n > limits::kMaxNodes) return false;
  for (uint64_t i = 0; i < n; ++i) {
    MemberAddr a;
    std::string_view raft, client;
    if (!r.varint32(&a.id) || !r.bytes(&raft) || !r.bytes(&client)) return false;
    if (raft.size() > limits::kMaxAddrBytes || client.size() > limits::kMaxAddrBytes)
      return false;
    a.raftAddr.assign(raft);
    a.clientAddr.assign(client);
    c.addrs.push_back(std::move(a));
  }
  if (!r.done() || !validConf(c)) return false;
  *out = std::move(c);
  return true;
}

std::string describeConf(const ConfState& c) {
  std::string s = "voters=";
  for (size_t i = 0; i < c.voters.size(); ++i) {
    if (i > 0) s.push_back(',');
    s.append(std::to_string(c.voters[i]));
  }
  if (!c.learners.empty()) {
    s.append(" learners=");
    for (size_t i = 0; i < c.learners.size(); ++i) {
      if (i > 0) s.push_back(',');
      s.append(std::to_string(c.learners[i]));
    }
  }
  return s;
}

}  // namespace kvr
