#include "net/node_config.h"

#include <xxhash.h>

#include <charconv>

#include "core/limits.h"
#include "core/membership.h"
#include "net/client_addresses.h"

namespace kvr::net {
namespace {

uint32_t msToTicks(uint32_t ms, uint32_t tickMs) {
  uint32_t ticks = (ms + tickMs - 1) / tickMs;  // round up: never shorter than asked
  return ticks == 0 ? 1 : ticks;
}

}  // namespace

bool parseMembers(const std::string& text, std::map<NodeId, std::string>* out,
                  std::string* error) {
  out->clear();
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string::npos) comma = text.size();
    std::string item = text.substr(pos, comma - pos);
    size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size()) {
      *error = "cluster member '" + item + "' is not of the form ID=HOST:PORT";
      return false;
    }
    uint32_t id = 0;
    auto [end, ec] = std::from_chars(item.data(), item.data() + eq, id);
    if (ec != std::errc() || end != item.data() + eq || id < 1 || id > limits::kMaxNodes) {
      *error = "cluster member id '" + item.substr(0, eq) + "' is not a number from 1 to " +
               std::to_string(limits::kMaxNodes);
      return false;
    }
    std::string address = item.substr(eq + 1);
    if (address.rfind(':') == std::string::npos) {
      *error = "cluster member address '" + address + "' has no :PORT";
      return false;
    }
    if (!out->emplace(id, address).second) {
      *error = "cluster member id " + std::to_string(id) + " appears twice";
      return false;
    }
    pos = comma + 1;
  }
  return true;
}

uint64_t defaultClusterId(const std::map<NodeId, std::string>& members) {
  std::string canonical;  // std::map: sorted by id
  for (const auto& [id, address] : members) {
    canonical += std::to_string(id) + "=" + address + ",";
  }
  uint64_t hash = XXH3_64bits(canonical.data(), canonical.size());
  return hash == 0 ? 1 : hash;
}

std::string checkHostPort(const std::string& address, const std::string& what) {
  size_t colon = address.rfind(':');
  uint32_t port = 0;
  const char* end = address.data() + address.size();
  bool portOk = false;
  if (colon != std::string::npos && colon + 1 < address.size()) {
    auto [stop, ec] = std::from_chars(address.data() + colon + 1, end, port);
    portOk = ec == std::errc() && stop == end && port >= 1 && port <= 65535;
  }
  if (address.empty() || address.size() > limits::kMaxAddrBytes || colon == 0 || !portOk) {
    return what + " '" + address + "' is not of the form HOST:PORT (a port 1..65535, at most " +
           std::to_string(limits::kMaxAddrBytes) + " bytes)";
  }
  return "";
}

std::string checkConfig(const NodeConfig& c) {
  if (c.id < 1 || c.id > limits::kMaxNodes) {
    return "node id must be from 1 to " + std::to_string(limits::kMaxNodes);
  }
  if (c.members.empty() || c.members.size() > limits::kMaxNodes) {
    return "the cluster must have from 1 to " + std::to_string(limits::kMaxNodes) + " members";
  }
  if (!c.members.count(c.id)) {
    return "node " + std::to_string(c.id) + " is not in the cluster member list";
  }
  if (c.dataDir.empty()) return "the data dir must not be empty";
  if (c.clientAddr.empty() || c.raftAddr.empty())
    return "client and raft addresses are required";
  if (!c.advertiseClientAddr.empty()) {
    std::string problem = checkHostPort(c.advertiseClientAddr, "the advertised client address");
    if (!problem.empty()) return problem;
  }
  if (c.joinConf && (!validConf(*c.joinConf) || !isLearnerIn(*c.joinConf, c.id))) {
    return "the configuration to join does not hold node " + std::to_string(c.id) +
           " as a learner: " + describeConf(*c.joinConf);
  }
  if (c.tickMs == 0) return "the tick interval must be at least 1 ms";
  uint32_t election = msToTicks(c.electionTimeoutMs, c.tickMs);
  uint32_t heartbeat = msToTicks(c.heartbeatMs, c.tickMs);
  if (election < 2 || heartbeat >= election) {
    return "the election timeout (" + std::to_string(c.electionTimeoutMs) +
           " ms) must be at least two ticks and longer than the heartbeat interval (" +
           std::to_string(c.heartbeatMs) + " ms)";
  }
  if (c.snapshotEntries == 0) return "snapshot-entries must be at least 1";
  if (c.snapshotWriteMBps > kMaxSnapshotWriteMBps) {
    return "snapshot-write-mbps must be at most " + std::to_string(kMaxSnapshotWriteMBps) +
           " (0: no limit)";
  }
  if (c.requestTimeoutMs == 0) return "the request timeout must be positive";
  if (c.maxClientConnections == 0) return "max-client-connections must be at least 1";
  if (c.tlsEnabled() &&
      (c.tls.certFile.empty() || c.tls.keyFile.empty() || c.tls.caFile.empty())) {
    return "TLS needs all of --tls-cert, --tls-key and --tls-ca";
  }
  if (!c.tlsEnabled() && (c.clientCertAuth || !c.tlsServerName.empty())) {
    return "--client-cert-auth and --tls-server-name need TLS (--tls-cert, --tls-key, "
           "--tls-ca)";
  }
  return "";
}

std::string advertisedClientAddr(const NodeConfig& c, unsigned boundPort) {
  if (!c.advertiseClientAddr.empty()) return c.advertiseClientAddr;
  size_t colon = c.clientAddr.rfind(':');
  std::string host = colon == std::string::npos ? c.clientAddr : c.clientAddr.substr(0, colon);
  // A wildcard is where this node listens, not where anyone can reach it.
  for (const char* wildcard : {"", "*", "0.0.0.0", "::", "[::]"}) {
    if (host == wildcard) return "";
  }
  if (boundPort == 0) return "";
  return host + ":" + std::to_string(boundPort);
}

ReplicaConfig replicaConfig(const NodeConfig& c) {
  ReplicaConfig rc;
  rc.raft.id = c.id;
  rc.raft.electionTicks = msToTicks(c.electionTimeoutMs, c.tickMs);
  rc.raft.heartbeatTicks = msToTicks(c.heartbeatMs, c.tickMs);
  if (c.joinConf) {
    rc.initialConf = *c.joinConf;
  } else {
    // Every node computes the same initial configuration from the same --cluster; its
    // raft addresses go into the Config entries of later changes, so that a node added
    // later learns where the initial members are from the log.
    for (const auto& [id, address] : c.members) {
      rc.initialConf.voters.push_back(id);
      rc.initialConf.addrs.push_back(MemberAddr{id, address, ""});
    }
  }
  rc.snapshotEveryEntries = c.snapshotEntries;
  rc.snapshotSpreadPercent = kSnapshotSpreadPercent;
  rc.requestTimeoutTicks = msToTicks(c.requestTimeoutMs, c.tickMs);
  return rc;
}

}  // namespace kvr::net
