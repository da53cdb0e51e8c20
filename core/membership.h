// Membership: the configuration (ConfState, core/types.h), the changes to it, their
// checks and their byte encoding in Config log entries and snapshot metadata.
//
// Changes are single-server (Raft thesis §4.1): one member added as a learner, one
// learner promoted to voter, or one member removed per change, so any majority of the
// old voters overlaps any majority of the new ones. A Config entry holds the whole new
// configuration; a node uses the newest one in its log, committed or not.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/types.h"

namespace kvr {

namespace limits {
constexpr size_t kMaxAddrBytes = 256;  // a member's raft or client address
// A learner is promoted only when its log is within this many entries of the leader's
// and the leader is replicating to it (not probing, not sending a snapshot).
constexpr uint64_t kMaxPromoteLagEntries = 64;
// The largest encodeConf output: 7 members with two maximal addresses each.
constexpr size_t kMaxConfBytes = 1 + 3 * 2 + 7 * (5 + 2 * (2 + kMaxAddrBytes)) + 7 * 5 * 2;
}  // namespace limits

enum class ConfChangeType : uint8_t {
  AddLearner = 0,  // a new member that receives the log but does not vote
  Promote = 1,     // a caught-up learner becomes a voter
  Remove = 2,      // a voter or learner leaves
};
const char* confChangeTypeName(ConfChangeType t);

struct ConfChange {
  ConfChangeType type = ConfChangeType::AddLearner;
  NodeId id = kNoNode;
  std::string raftAddr;    // AddLearner only
  std::string clientAddr;  // AddLearner only

  bool operator==(const ConfChange&) const = default;
};

enum class ConfChangeError : uint8_t {
  None = 0,
  NotLeader,
  TransferInProgress,
  NotReady,      // the leader has not yet committed an entry of its own term
  InProgress,    // an earlier change is not committed yet
  InvalidId,     // 0 or over the id range
  IdExists,      // add: already a member
  UnknownNode,   // promote/remove: not a member
  NotLearner,    // promote: already a voter
  LearnerLags,   // promote: the learner is not caught up
  LastVoter,     // remove: the only voter
  TooManyNodes,  // add: kMaxNodes members already
  AddressInUse,  // add: another member has this raft or client address
  BadAddress,    // add: empty or over kMaxAddrBytes
};
const char* confChangeErrorText(ConfChangeError e);

bool isVoterIn(const ConfState& c, NodeId id);
bool isLearnerIn(const ConfState& c, NodeId id);
bool isMemberOf(const ConfState& c, NodeId id);
const MemberAddr* addrOf(const ConfState& c, NodeId id);

// A well-formed configuration: 1..kMaxNodes voters, members sorted and unique, learners
// disjoint from voters, addresses only for members and within limits.
bool validConf(const ConfState& c);

// The configuration after `cc`, or why it cannot apply (checks that need only the
// configuration; the leader adds its own: leadership, progress, pending changes).
ConfChangeError applyConfChange(const ConfState& current, const ConfChange& cc, ConfState* out);

// Config entry payload and snapshot metadata encoding (versioned, shortest varints).
// decodeConf returns false on anything malformed or not validConf.
std::string encodeConf(const ConfState& c);
bool decodeConf(std::string_view bytes, ConfState* out);

std::string describeConf(const ConfState& c);  // "voters=1,2,3 learners=4"

}  // namespace kvr
