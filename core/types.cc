#include "core/types.h"

namespace kvr {

const char* msgTypeName(MsgType t) {
  switch (t) {
    case MsgType::PreVote: return "PreVote";
    case MsgType::PreVoteResp: return "PreVoteResp";
    case MsgType::Vote: return "Vote";
    case MsgType::VoteResp: return "VoteResp";
    case MsgType::Append: return "Append";
    case MsgType::AppendResp: return "AppendResp";
    case MsgType::Heartbeat: return "Heartbeat";
    case MsgType::HeartbeatResp: return "HeartbeatResp";
    case MsgType::Snapshot: return "Snapshot";
    case MsgType::SnapshotResp: return "SnapshotResp";
    case MsgType::TimeoutNow: return "TimeoutNow";
    case MsgType::ReadIndex: return "ReadIndex";
    case MsgType::ReadIndexResp: return "ReadIndexResp";
    case MsgType::TermPoll: return "TermPoll";
    case MsgType::TermPollResp: return "TermPollResp";
  }
  return "?";
}

}  // namespace kvr
