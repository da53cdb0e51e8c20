// The client side of KvService.snapshot: download one consistent copy of the cluster's
// KV state (kvctl snapshot save). Synchronous; owns its event loop (like KvClient), so
// do not use it on a thread that already has a kj event loop.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/types.h"
#include "net/kv_client.h"

namespace kvr::client {

struct SnapshotDownload {
  bool ok = false;
  std::string error;     // when !ok
  std::string endpoint;  // who served it
  uint64_t clusterId = 0;
  NodeId nodeId = kNoNode;
  Index index = 0;
  Term term = 0;
  std::string data;  // the KV snapshot bytes (core/kv.cc format)
};

// Tries the endpoints in turn (any node can serve: a follower confirms its read index
// with the leader) until one answers ok or options.timeoutMs has passed; transient
// answers (not leader, timeout, busy, shutting down, unreachable) move on to the next
// endpoint. Then reads the copy in chunks of `chunkBytes` (each chunk within
// options.timeoutMs). `progress(done, total)` is called after each chunk.
SnapshotDownload downloadSnapshot(const std::vector<std::string>& endpoints,
                                  const Options& options, uint32_t chunkBytes = 1024 * 1024,
                                  const std::function<void(uint64_t, uint64_t)>& progress = {});

}  // namespace kvr::client
