#include "net/node_metrics.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "net/node.h"

#ifndef KVRAFT_VERSION
#define KVRAFT_VERSION "unknown"
#endif

namespace kvr::net {
namespace {

using metrics::Label;
using metrics::Writer;

constexpr double kNanosPerSecond = 1e9;

const char* roleLabel(Role role) {
  switch (role) {
    case Role::Follower: return "follower";
    case Role::PreCandidate: return "pre_candidate";
    case Role::Candidate: return "candidate";
    case Role::Leader: return "leader";
  }
  return "unknown";
}

bool isWrite(OpType op) {
  return op == OpType::Put || op == OpType::Delete || op == OpType::Cas ||
         op == OpType::OpenSession;
}

// A proposal "failed" when the client got no applied result: not ok, not found (a
// delete of an absent key) or a cas mismatch are all results of an applied command.
bool proposalFailed(Status status) {
  return status != Status::Ok && status != Status::NotFound && status != Status::CasMismatch;
}

}  // namespace

void ServerMetrics::observe(const ReplicaStatus& before, const ReplicaStatus& now) {
  if (now.leader != before.leader && now.leader != kNoNode) leaderChanges.inc();
  if (now.commit > before.commit) entriesCommitted.inc(now.commit - before.commit);
  if (now.applied > before.applied) entriesApplied.inc(now.applied - before.applied);
  if (now.snapshotIndex > before.snapshotIndex) {
    if (before.applied < now.snapshotIndex) {
      snapshotsInstalled.inc();
    } else {
      snapshotsTaken.inc();
    }
  }
}

ClientMetrics::Request ClientMetrics::started(const KvCommand* cmd) const {
  Request r;
  r.startNs = metrics::monotonicNanos();
  if (cmd != nullptr && static_cast<size_t>(cmd->op) < kOps - 1) {
    r.op = static_cast<uint8_t>(cmd->op);
  }
  return r;
}

void ClientMetrics::submitted(Request& request) {
  if (request.op < kOps - 1 && isWrite(static_cast<OpType>(request.op))) {
    request.proposal = true;
    pending_.fetch_add(1, std::memory_order_relaxed);
  }
}

void ClientMetrics::finished(const Request& request, Status status) {
  size_t s = static_cast<size_t>(status);
  if (s >= kStatuses) s = static_cast<size_t>(Status::Invalid);
  requests_[request.op][s].inc();
  uint64_t now = metrics::monotonicNanos();
  latency_[request.op].observe(double(now - request.startNs) / kNanosPerSecond);
  if (request.proposal) {
    pending_.fetch_sub(1, std::memory_order_relaxed);
    if (proposalFailed(status)) proposalsFailed_.inc();
  }
}

const char* ClientMetrics::opLabel(size_t op) {
  static const char* const kNames[kOps] = {"put",   "get",          "delete", "cas",
                                           "range", "open_session", "unknown"};
  return op < kOps ? kNames[op] : "unknown";
}

uint64_t residentMemoryBytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t size = 0;
  uint64_t resident = 0;
  if (!(statm >> size >> resident)) return 0;
  return resident * uint64_t(::sysconf(_SC_PAGESIZE));
}

double processStartTimeSeconds() {
  // Field 22 of /proc/self/stat: start time in clock ticks after boot; /proc/stat btime:
  // boot time in seconds since the epoch. The command (field 2) may contain spaces, so
  // fields are counted after its closing parenthesis.
  std::ifstream statFile("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(statFile)),
                   std::istreambuf_iterator<char>());
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  uint64_t startTicks = 0;
  for (int i = 3; i <= 22 && fields >> field; ++i) {
    if (i == 22) startTicks = std::strtoull(field.c_str(), nullptr, 10);
  }
  std::ifstream procStat("/proc/stat");
  std::string line;
  uint64_t bootTime = 0;
  while (std::getline(procStat, line)) {
    if (line.rfind("btime ", 0) == 0) bootTime = std::strtoull(line.c_str() + 6, nullptr, 10);
  }
  long ticksPerSecond = ::sysconf(_SC_CLK_TCK);
  if (bootTime == 0 || startTicks == 0 || ticksPerSecond <= 0) return 0;
  return double(bootTime) + double(startTicks) / double(ticksPerSecond);
}

std::string renderNodeMetrics(Node& node) {
  const NodeMetrics& m = node.metrics();
  ReplicaStatus status = node.replica().status();
  Writer w;

  w.family("kvraft_build_info", Writer::Type::Gauge, "Always 1; the version is a label.");
  w.sample("kvraft_build_info", {{"version", KVRAFT_VERSION}}, uint64_t(1));

  // ---- Raft ----
  w.family("kvraft_server_term", Writer::Type::Gauge, "The current Raft term.");
  w.sample("kvraft_server_term", uint64_t(status.term));
  w.family("kvraft_server_role", Writer::Type::Gauge,
           "1 for this node's current Raft role, 0 for the others.");
  for (Role r : {Role::Follower, Role::PreCandidate, Role::Candidate, Role::Leader}) {
    w.sample("kvraft_server_role", {{"role", roleLabel(r)}}, uint64_t(status.role == r));
  }
  w.family("kvraft_server_is_leader", Writer::Type::Gauge, "1 if this node is the leader.");
  w.sample("kvraft_server_is_leader", uint64_t(status.role == Role::Leader));
  w.family("kvraft_server_has_leader", Writer::Type::Gauge,
           "1 if this node knows a leader for its current term.");
  w.sample("kvraft_server_has_leader", uint64_t(status.leader != kNoNode));
  w.family("kvraft_server_leader_changes_seen_total", Writer::Type::Counter,
           "Times the leader known to this node changed to another node.");
  w.sample("kvraft_server_leader_changes_seen_total", m.server.leaderChanges.value());
  w.family("kvraft_server_commit_index", Writer::Type::Gauge, "The Raft commit index.");
  w.sample("kvraft_server_commit_index", uint64_t(status.commit));
  w.family("kvraft_server_applied_index", Writer::Type::Gauge,
           "The index of the last entry applied to the key-value state.");
  w.sample("kvraft_server_applied_index", uint64_t(status.applied));
  w.family("kvraft_server_last_log_index", Writer::Type::Gauge, "The last index in the log.");
  w.sample("kvraft_server_last_log_index", uint64_t(status.lastIndex));
  w.family("kvraft_server_snapshot_index", Writer::Type::Gauge,
           "The index the current snapshot covers.");
  w.sample("kvraft_server_snapshot_index", uint64_t(status.snapshotIndex));
  w.family("kvraft_server_log_payload_floor_index", Writer::Type::Gauge,
           "Log entries up to here hold only their term in memory: every member holds them "
           "and they are applied (those after it, up to the last index, hold their payload).");
  w.sample("kvraft_server_log_payload_floor_index", uint64_t(status.payloadFloor));
  w.family("kvraft_server_recovering", Writer::Type::Gauge,
           "1 while this node repairs storage damage from the leader (it does not vote).");
  w.sample("kvraft_server_recovering", uint64_t(status.recovering));
  w.family("kvraft_server_recover_until_index", Writer::Type::Gauge,
           "While recovering: the index its log must match the leader's up to.");
  w.sample("kvraft_server_recover_until_index", uint64_t(status.recoverUntil));
  w.family("kvraft_server_proposals_committed_total", Writer::Type::Counter,
           "Log entries seen committed since this process started (commit index advance; "
           "includes leader no-ops).");
  w.sample("kvraft_server_proposals_committed_total", m.server.entriesCommitted.value());
  w.family("kvraft_server_proposals_applied_total", Writer::Type::Counter,
           "Log entries applied since this process started (applied index advance).");
  w.sample("kvraft_server_proposals_applied_total", m.server.entriesApplied.value());
  w.family("kvraft_server_proposals_failed_total", Writer::Type::Counter,
           "Client writes handed to the replica that got no applied result (not leader, "
           "timeout, busy, shutting down, ...).");
  w.sample("kvraft_server_proposals_failed_total", m.client.proposalsFailed());
  w.family("kvraft_server_proposals_pending", Writer::Type::Gauge,
           "Client writes handed to the replica and not answered yet.");
  w.sample("kvraft_server_proposals_pending", m.client.proposalsPending());
  w.family("kvraft_server_pending_requests", Writer::Type::Gauge,
           "Requests (writes and linearizable reads) the replica is holding.");
  w.sample("kvraft_server_pending_requests", uint64_t(node.replica().pendingRequests()));

  // ---- disk ----
  w.family("kvraft_disk_wal_fsync_duration_seconds", Writer::Type::Histogram,
           "fdatasync of a WAL segment file.");
  w.histogram("kvraft_disk_wal_fsync_duration_seconds", {}, m.disk.walFsyncSeconds);
  w.family("kvraft_disk_wal_written_bytes_total", Writer::Type::Counter,
           "Bytes appended to WAL segment files.");
  w.sample("kvraft_disk_wal_written_bytes_total", m.disk.walBytes.value());
  w.family("kvraft_disk_wal_writes_total", Writer::Type::Counter,
           "WAL writes (one append and fsync each, shared by every batch queued meanwhile).");
  w.sample("kvraft_disk_wal_writes_total", node.storage().writesCompleted());
  w.family("kvraft_disk_wal_batches_total", Writer::Type::Counter,
           "Batches of Raft state and entries made durable.");
  w.sample("kvraft_disk_wal_batches_total", node.storage().batchesDurable());
  w.family("kvraft_snapshot_save_duration_seconds", Writer::Type::Histogram,
           "Writing a snapshot file, from creating it until its contents are durable.");
  w.histogram("kvraft_snapshot_save_duration_seconds", {}, m.disk.snapshotSaveSeconds);
  w.family("kvraft_snapshot_size_bytes", Writer::Type::Gauge,
           "Size of the last snapshot file this process wrote (0: none yet).");
  w.sample("kvraft_snapshot_size_bytes",
           m.disk.lastSnapshotBytes.load(std::memory_order_relaxed));
  w.family("kvraft_snapshots_total", Writer::Type::Counter,
           "Snapshots taken locally or installed from the leader.");
  w.sample("kvraft_snapshots_total", {{"origin", "local"}}, m.server.snapshotsTaken.value());
  w.sample("kvraft_snapshots_total", {{"origin", "leader"}},
           m.server.snapshotsInstalled.value());

  // ---- clients ----
  w.family("kvraft_client_requests_total", Writer::Type::Counter,
           "Client requests answered, by operation and reply status.");
  for (size_t op = 0; op < ClientMetrics::kOps; ++op) {
    for (size_t s = 0; s < ClientMetrics::kStatuses; ++s) {
      uint64_t n = m.client.requests(op, s);
      // Every real operation's "ok" series exists from the start; others once non-zero.
      if (n == 0 && (s != 0 || op == ClientMetrics::kOps - 1)) continue;
      w.sample("kvraft_client_requests_total",
               {{"op", ClientMetrics::opLabel(op)}, {"status", statusName(Status(s))}}, n);
    }
  }
  w.family("kvraft_client_request_duration_seconds", Writer::Type::Histogram,
           "Client requests from arrival to reply, by operation.");
  for (size_t op = 0; op < ClientMetrics::kOps; ++op) {
    if (op == ClientMetrics::kOps - 1 && m.client.latency(op).count() == 0) continue;
    w.histogram("kvraft_client_request_duration_seconds", {{"op", ClientMetrics::opLabel(op)}},
                m.client.latency(op));
  }

  // ---- peers ----
  const NodeConfig& config = node.config();
  auto eachPeer = [&](auto&& fn) {
    for (const auto& [id, address] : config.members) {
      if (id == config.id) continue;
      std::string peer = std::to_string(id);
      fn(id, peer);
    }
  };
  w.family("kvraft_network_peer_hellos_refused_total", Writer::Type::Counter,
           "Peer hellos this node refused, by reason: stale_incarnation (a member whose data "
           "dir was wiped or replaced), other (another cluster, not a member).");
  {
    const uint64_t refused = node.raftService().refusedHellos();
    const uint64_t stale = node.raftService().refusedStaleIncarnations();
    w.sample("kvraft_network_peer_hellos_refused_total", {{"reason", "stale_incarnation"}},
             stale);
    w.sample("kvraft_network_peer_hellos_refused_total", {{"reason", "other"}},
             refused - stale);
  }
  w.family("kvraft_network_peer_up", Writer::Type::Gauge,
           "1 while the connection to the peer is up (its hello was accepted).");
  eachPeer([&](NodeId id, const std::string& peer) {
    w.sample("kvraft_network_peer_up", {{"peer", peer}}, uint64_t(node.transport().isUp(id)));
  });
  w.family("kvraft_network_peer_round_trip_time_seconds", Writer::Type::Histogram,
           "A ping written to the peer until its pong was read (one a second).");
  eachPeer([&](NodeId id, const std::string& peer) {
    w.histogram("kvraft_network_peer_round_trip_time_seconds", {{"peer", peer}},
                m.peers.roundTripSeconds[id]);
  });
  w.family("kvraft_network_peer_sent_messages_total", Writer::Type::Counter,
           "Raft messages delivered to the peer.");
  eachPeer([&](NodeId id, const std::string& peer) {
    w.sample("kvraft_network_peer_sent_messages_total", {{"peer", peer}},
             node.transport().stats(id).sentMessages);
  });
  w.family("kvraft_network_peer_dropped_messages_total", Writer::Type::Counter,
           "Raft messages to the peer that were dropped, by reason.");
  eachPeer([&](NodeId id, const std::string& peer) {
    auto stats = node.transport().stats(id);
    w.sample("kvraft_network_peer_dropped_messages_total",
             {{"peer", peer}, {"reason", "queue_full"}}, stats.droppedQueueFull);
    w.sample("kvraft_network_peer_dropped_messages_total",
             {{"peer", peer}, {"reason", "connection_failed"}}, stats.droppedOnFailure);
  });
  w.family("kvraft_network_peer_connection_failures_total", Writer::Type::Counter,
           "Connection attempts or connections to the peer that failed.");
  eachPeer([&](NodeId id, const std::string& peer) {
    w.sample("kvraft_network_peer_connection_failures_total", {{"peer", peer}},
             node.transport().stats(id).failures);
  });

  // ---- process ----
  w.family("kvraft_process_resident_memory_bytes", Writer::Type::Gauge,
           "Resident memory size in bytes (/proc/self/statm).");
  w.sample("kvraft_process_resident_memory_bytes", residentMemoryBytes());
  w.family("kvraft_process_start_time_seconds", Writer::Type::Gauge,
           "Start time of the process since the Unix epoch in seconds.");
  w.sample("kvraft_process_start_time_seconds", m.startTimeSeconds);
  return w.take();
}

}  // namespace kvr::net
