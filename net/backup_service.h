// The server side of KvService.snapshot (schemas/kv.capnp): a consistent, linearizable
// copy of the node's KV state, read by the client in bounded chunks (kvctl snapshot save).
//
// How the copy is taken: the node submits a linearizable read to its replica (ReadIndex:
// the leader confirms its leadership with a quorum; a follower asks the leader), and in
// the replica's callback, once the state has applied at least that read index, it
// copies the KV snapshot bytes (KvStore::snapshot, the same bytes a local Raft snapshot
// holds) together with the applied index and its term. Everything happens on the loop
// thread in one step, so bytes, index and term agree, and the copy holds every write
// acknowledged before the call started. (The latest durable snapshot file would be
// consistent too, but up to --snapshot-entries writes old: not what an operator expects.)
//
// The copy is held in memory until the client drops the stream capability or its
// connection closes; at most kMaxOpenSnapshots copies are held at once (then Busy).
#pragma once

#include <functional>
#include <memory>

#include "core/replica.h"
#include "net/node_log.h"
#include "net/rpc_listener.h"
#include "schemas/kv.capnp.h"

namespace kvr::net {

constexpr uint32_t kMaxOpenSnapshots = 2;
constexpr uint32_t kMaxSnapshotReadBytes = 1024 * 1024;

class SnapshotSource {
 public:
  SnapshotSource(Replica& replica, uint64_t clusterId, std::function<void()> afterInput,
                 FatalFn fatal);
  KJ_DISALLOW_COPY(SnapshotSource);

  using Context =
      capnp::CallContext<schema::KvService::SnapshotParams, schema::KvService::SnapshotResults>;
  // Answers one KvService.snapshot call. `stopped`: the node is shutting down.
  kj::Promise<void> serve(Context context, kj::Own<ConnectionHandle> connection, bool stopped);

  uint32_t openSnapshots() const { return *open_; }

 private:
  class Stream;

  Replica& replica_;
  uint64_t clusterId_;
  std::function<void()> afterInput_;
  FatalFn fatal_;
  std::shared_ptr<uint32_t> open_ = std::make_shared<uint32_t>(0);  // streams alive
};

}  // namespace kvr::net
