#include "bin/kvnode_join.h"

#include <cstdlib>
#include <optional>

#include <kj/debug.h>

#include "core/membership.h"
#include "disk/identity.h"
#include "disk/join_file.h"
#include "disk/posix_fs.h"
#include "net/kv_client.h"
#include "net/log.h"

namespace kvnode {
namespace {

using kvr::client::AdminOp;
using kvr::client::AdminRequest;
using kvr::client::MemberInfo;
using kvr::client::Result;

void info(const kvr::net::NodeConfig& config, const std::string& text) {
  kvr::net::logEvent(kvr::net::LogLevel::Info, config.id, std::nullopt, text);
}

kvr::ConfState confOf(const std::vector<MemberInfo>& members) {
  kvr::ConfState conf;
  for (const MemberInfo& m : members) {
    (m.voter ? conf.voters : conf.learners).push_back(m.id);
    conf.addrs.push_back(kvr::MemberAddr{m.id, m.raftAddr, m.clientAddr});
  }
  return conf;  // the leader lists members sorted by id
}

void useRecord(kvr::net::NodeConfig& config, const kvr::disk::JoinRecord& record) {
  config.clusterId = record.clusterId;
  config.joinConf = record.conf;
  config.members.clear();
  for (const kvr::MemberAddr& a : record.conf.addrs) config.members[a.id] = a.raftAddr;
  config.members[config.id] = config.raftAddr;
}

// Asks the cluster to add this node as a learner (or finds it added already).
bool askCluster(const kvr::net::NodeConfig& config, const std::string& endpoints,
                uint32_t timeoutMs, kvr::disk::JoinRecord* record, std::string* error) {
  // The port of --client-addr: the listener binds it later, and a fixed one is needed
  // here (a node that asks for an ephemeral port cannot name it in advance).
  unsigned port = 0;
  size_t colon = config.clientAddr.rfind(':');
  if (colon != std::string::npos)
    port = unsigned(std::atoi(config.clientAddr.c_str() + colon + 1));
  std::string clientAddr = kvr::net::advertisedClientAddr(config, port);
  if (clientAddr.empty() || clientAddr.substr(clientAddr.rfind(':') + 1) == "0") {
    *error = "--join needs the client address to register with the cluster: --client-addr " +
             config.clientAddr +
             " names no reachable host and port; set --advertise-client-addr HOST:PORT";
    return false;
  }
  std::vector<std::string> list;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions(
                     [&]() { list = kvr::client::parseEndpointList(endpoints); })) {
    *error = "bad --join '" + endpoints + "': " + e->getDescription().cStr();
    return false;
  }
  kvr::client::Options options;
  options.timeoutMs = timeoutMs;
  if (config.tlsEnabled()) {  // the node's certificate serves as a client certificate too
    options.tls.caFile = config.tls.caFile;
    options.tls.certFile = config.tls.certFile;
    options.tls.keyFile = config.tls.keyFile;
    options.tls.serverName = config.tlsServerName;
  }
  kvr::client::KvClient client(list, options);
  info(config, "joining the cluster at " + endpoints +
                   ": asking to be added as a learner "
                   "(raft " +
                   config.raftAddr + ", client " + clientAddr + ")");
  Result r = client.admin(
      AdminRequest{AdminOp::MemberAdd, config.id, config.raftAddr, clientAddr});
  if (!r.ok() && r.confError == kvr::ConfChangeError::IdExists) {
    // Added before (by an operator, or by an earlier --join that stopped before it
    // wrote its join file): fine if it is this node, at these addresses, still a learner.
    for (const MemberInfo& m : r.members) {
      if (m.id != config.id) continue;
      if (m.raftAddr != config.raftAddr || m.clientAddr != clientAddr) {
        *error = "node " + std::to_string(config.id) + " is already a member at raft " +
                 m.raftAddr + ", client " + m.clientAddr + ", not at raft " + config.raftAddr +
                 ", client " + clientAddr + "; remove it first (kvctl member remove " +
                 std::to_string(config.id) + ") or use another id";
        return false;
      }
      if (m.voter) {
        *error = "node " + std::to_string(config.id) +
                 " is already a voter; a voter's data "
                 "dir cannot be started empty (remove it and add it again)";
        return false;
      }
      info(config, "already a learner of the cluster at these addresses");
      r.outcome = kvr::client::Outcome::Ok;
    }
  }
  if (!r.ok()) {
    *error = "cannot join the cluster at " + endpoints + ": " + r.error;
    return false;
  }
  record->clusterId = r.clusterId;
  record->conf = confOf(r.members);
  if (r.clusterId == 0 || !kvr::validConf(record->conf) ||
      !kvr::isLearnerIn(record->conf, config.id)) {
    *error = "the cluster's answer does not hold node " + std::to_string(config.id) +
             " as a learner: " + kvr::describeConf(record->conf);
    return false;
  }
  return true;
}

}  // namespace

bool prepareJoin(kvr::net::NodeConfig& config, const std::string& endpoints, uint32_t timeoutMs,
                 std::string* error) {
  kvr::disk::PosixFileSystem fs;
  std::optional<kvr::disk::JoinRecord> record;
  bool read = false;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                fs.createDir(config.dataDir);
                read = kvr::disk::readJoinFile(fs, config.dataDir, &record, error);
              })) {
    *error = "cannot read the data dir " + config.dataDir + ": " + e->getDescription().cStr();
    return false;
  }
  if (!read) return false;
  if (record) {
    info(config, "this node joined cluster " + std::to_string(record->clusterId) +
                     " earlier (" + config.dataDir + "/" + kvr::disk::kJoinFileName +
                     "): starting from its data dir, asking nobody");
    useRecord(config, *record);
    return true;
  }
  if (fs.exists(kvr::disk::joinPath(config.dataDir, kvr::disk::kIdentityFileName))) {
    *error = "the data dir " + config.dataDir +
             " already belongs to a node started with "
             "--cluster; --join is for a new, empty data dir (start this one with its "
             "--cluster flags)";
    return false;
  }
  kvr::disk::JoinRecord fresh;
  if (!askCluster(config, endpoints, timeoutMs, &fresh, error)) return false;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions(
                     [&]() { kvr::disk::writeJoinFile(fs, config.dataDir, fresh); })) {
    *error = "cannot write the join file in " + config.dataDir + ": " +
             e->getDescription().cStr();
    return false;
  }
  info(config, "added as a learner of cluster " + std::to_string(fresh.clusterId) + " (" +
                   kvr::describeConf(fresh.conf) + "); catching up from the leader");
  useRecord(config, fresh);
  return true;
}

}  // namespace kvnode
