// Core value types shared by the Raft and KV state machines and their hosts.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/shared_bytes.h"

namespace kvr {

using NodeId = uint32_t;  // 1..kMaxNodes; 0 means "none"
using Term = uint64_t;
using Index = uint64_t;

constexpr NodeId kNoNode = 0;

enum class EntryKind : uint8_t {
  Noop = 0,     // appended by each new leader at the start of its term
  Command = 1,  // an encoded KvCommand (core/command.h)
  Config = 2,   // a whole new ConfState (core/membership.h encodeConf); takes effect when
                // appended, committed or not, and reverts if the entry is truncated
};

struct Entry {
  Term term = 0;
  Index index = 0;
  EntryKind kind = EntryKind::Noop;
  // Shared, not copied, wherever the entry goes (storage, each follower's Append, apply).
  SharedBytes data;

  bool operator==(const Entry&) const = default;
};

// What must be durable before a vote or an acknowledgement leaves the node.
struct HardState {
  Term term = 0;
  NodeId vote = kNoNode;
  Index commit = 0;  // advisory: persisted lazily, never gates a message

  bool operator==(const HardState&) const = default;
};

// Where a member serves: opaque strings to the core (net/ parses them).
struct MemberAddr {
  NodeId id = kNoNode;
  std::string raftAddr;
  std::string clientAddr;

  bool operator==(const MemberAddr&) const = default;
};

// The configuration: voting members and learners (non-voting members that receive the
// log). Read from state (the newest Config entry in the log, else the snapshot, else
// bootstrap), never a constant. core/membership.h checks and encodes it.
struct ConfState {
  std::vector<NodeId> voters;     // sorted, unique, 1..kMaxNodes of them
  std::vector<NodeId> learners;   // sorted, unique, disjoint from voters
  std::vector<MemberAddr> addrs;  // sorted by id, members only; may be empty (bootstrap)

  bool operator==(const ConfState&) const = default;
};

struct SnapshotMeta {
  Index index = 0;  // last log index the snapshot covers
  Term term = 0;    // term of that entry
  ConfState conf;

  bool operator==(const SnapshotMeta&) const = default;
};

// A state-machine snapshot. The data is immutable and shared: the leader may be
// streaming it to several followers while it is also on disk.
struct Snapshot {
  SnapshotMeta meta;
  std::shared_ptr<const std::string> data;
};

enum class MsgType : uint8_t {
  PreVote = 0,
  PreVoteResp = 1,
  Vote = 2,
  VoteResp = 3,
  Append = 4,
  AppendResp = 5,
  Heartbeat = 6,
  HeartbeatResp = 7,
  Snapshot = 8,  // one chunk of a snapshot
  SnapshotResp = 9,
  TimeoutNow = 10,  // leadership transfer: campaign now
  ReadIndex = 11,   // follower asks the leader for a read index
  ReadIndexResp = 12,
  TermPoll = 13,  // a recovering node asks a member for its term
  TermPollResp = 14,
};
constexpr uint8_t kMsgTypeCount = 15;

const char* msgTypeName(MsgType t);

// One Raft message. Field use by type:
//   PreVote/Vote:        index/logTerm = candidate's last log; context = kCampaignTransfer
//                        when the campaign follows a TimeoutNow.
//   *VoteResp:           reject.
//   Append:              index/logTerm = previous entry; entries; commit.
//   AppendResp:          index = highest matching index (accept) or the rejected index;
//                        reject; rejectHint/logTerm = follower's hint for fast back-up.
//   Heartbeat:           commit; context = read-index round.
//   HeartbeatResp:       context echoed.
//   Snapshot:            snap (meta), snapOffset, snapChunk, snapDone, snapSize.
//   SnapshotResp:        snapOffset = next offset wanted; reject; index = snapshot index.
//   ReadIndex:           context = requester's read id.
//   ReadIndexResp:       context echoed; index = read index; reject = cannot serve.
//   TermPoll:            context = the poller's nonce for this recovery; term = the
//                        poller's (informational: it changes no receiver's term).
//   TermPollResp:        context echoed; term = the responder's current term.
struct Message {
  MsgType type = MsgType::Heartbeat;
  NodeId from = kNoNode;
  NodeId to = kNoNode;
  Term term = 0;
  Term logTerm = 0;
  Index index = 0;
  Index commit = 0;
  // Append and Heartbeat: every member that can still catch up from the log holds the
  // leader's log up to here (<= commit), so none will need those entries' payloads again
  // (Raft::releasePayloads, countHeldByAll).
  Index heldByAll = 0;
  bool reject = false;
  Index rejectHint = 0;
  uint64_t context = 0;
  std::vector<Entry> entries;

  SnapshotMeta snap;
  uint64_t snapOffset = 0;
  uint64_t snapSize = 0;
  bool snapDone = false;
  std::string snapChunk;

  bool operator==(const Message&) const = default;
};

constexpr uint64_t kCampaignTransfer = 1;
// AppendResp.context from a recovering node: its log may have lost entries it
// acknowledged, so the leader's match for it may be too high; AppendResp.commit then
// carries the follower's commit index (known to match the leader's log).
constexpr uint64_t kRecoveringResponse = 1;

// What a node recovered from its storage at start (disk/ fills this).
struct RecoveredState {
  HardState hardState;
  Snapshot snapshot;           // meta.index == 0 and null data when none
  std::vector<Entry> entries;  // contiguous, starting at snapshot.meta.index + 1
  // The storage found damage that may have cost entries this node acknowledged (or its
  // snapshot): the node must catch up from a leader to at least `recoverUntil` before
  // it votes again (Raft's recovering state, docs/STORAGE.md).
  bool recovering = false;
  Index recoverUntil = 0;
};

}  // namespace kvr
