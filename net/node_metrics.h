// What a kvnode counts for its operators, and its Prometheus rendering (GET /metrics).
//
// The core stays free of clocks and I/O: nothing here reaches into core/. The node
// counts at its own boundary instead:
//  - ServerMetrics: changes of the replica's observable status (leader, commit and
//    applied index), seen by Node::afterInput after every input;
//  - ClientMetrics: requests as KvService receives and answers them (op, status,
//    latency; writes handed to the replica are "proposals");
//  - DiskMetrics: WAL fsyncs and bytes, snapshot saves, seen by MeteredFileSystem
//    (net/metered_fs.h) under the WAL, on the pool thread (hence atomics);
//  - PeerMetrics: ping round trips, seen by PeerTransport.
// Gauges (term, role, indexes, peer state, memory) are read when rendering.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "core/command.h"
#include "core/limits.h"
#include "core/replica.h"
#include "net/metrics.h"

namespace kvr::net {

class Node;

struct ServerMetrics {
  metrics::Counter leaderChanges;       // the known leader became another node
  metrics::Counter entriesCommitted;    // advance of the commit index seen here
  metrics::Counter entriesApplied;      // advance of the applied index seen here
  metrics::Counter snapshotsTaken;      // local snapshots
  metrics::Counter snapshotsInstalled;  // snapshots received from a leader

  // Called by the node after every input with the status before and after it.
  void observe(const ReplicaStatus& before, const ReplicaStatus& now);
};

class ClientMetrics {
 public:
  static constexpr size_t kOps = 7;  // the OpTypes, then "unknown" (undecodable)
  static constexpr size_t kStatuses = 12;

  // One request, from its arrival to its reply.
  struct Request {
    uint8_t op = kOps - 1;
    bool proposal = false;  // a write handed to the replica
    uint64_t startNs = 0;
  };

  // A request arrived; `cmd` is null if it could not be decoded.
  Request started(const KvCommand* cmd) const;
  // The request was handed to the replica (a write becomes a pending proposal).
  void submitted(Request& request);
  // The reply is known (exactly once per started request).
  void finished(const Request& request, Status status);

  static const char* opLabel(size_t op);
  uint64_t requests(size_t op, size_t status) const { return requests_[op][status].value(); }
  const metrics::Histogram& latency(size_t op) const { return latency_[op]; }
  uint64_t proposalsFailed() const { return proposalsFailed_.value(); }
  uint64_t proposalsPending() const { return pending_.load(std::memory_order_relaxed); }

 private:
  metrics::Counter requests_[kOps][kStatuses];
  metrics::Histogram latency_[kOps];  // request buckets
  metrics::Counter proposalsFailed_;
  std::atomic<uint64_t> pending_{0};
};

struct DiskMetrics {
  metrics::Histogram walFsyncSeconds{metrics::kDiskSecondsBuckets};
  metrics::Counter walBytes;  // appended to WAL segment files
  // Creating a snapshot file until its contents are durable (fdatasync returned).
  metrics::Histogram snapshotSaveSeconds{metrics::kDiskSecondsBuckets};
  std::atomic<uint64_t> lastSnapshotBytes{0};
};

struct PeerMetrics {
  // Per peer id: a ping written until its pong was read.
  metrics::Histogram roundTripSeconds[limits::kMaxNodes + 1];
};

// Resident set size from /proc/self/statm (0 if unreadable).
uint64_t residentMemoryBytes();
// The process start time in seconds since the epoch, from /proc (0 if unreadable).
double processStartTimeSeconds();

struct NodeMetrics {
  ServerMetrics server;
  ClientMetrics client;
  DiskMetrics disk;
  PeerMetrics peers;
  double startTimeSeconds = processStartTimeSeconds();
};

// The whole exposition for `node` (which must have started).
std::string renderNodeMetrics(Node& node);

}  // namespace kvr::net
