// What the replica tests host a Replica with: a transport that keeps what was sent and a
// storage that keeps the batches it was handed until the test makes them durable.
#pragma once

#include <cstdint>
#include <vector>

#include "core/env.h"

namespace kvr::test {

struct CapturingTransport final : Transport {
  std::vector<Message> sent;
  void send(Message&& msg) override { sent.push_back(std::move(msg)); }
};

// Durable only when the test calls Replica::onPersisted for the seqs it kept.
struct HeldStorage final : Storage {
  std::vector<uint64_t> seqs;
  void persist(PersistBatch&& batch) override { seqs.push_back(batch.seq); }
};

// The leader's answer to a follower's ReadIndex.
inline Message readIndexResp(NodeId from, NodeId to, Term term, uint64_t context, Index index) {
  Message m;
  m.type = MsgType::ReadIndexResp;
  m.from = from;
  m.to = to;
  m.term = term;
  m.context = context;
  m.index = index;
  return m;
}

}  // namespace kvr::test
