#include "bin/kvnode_restore.h"

#include <kj/debug.h>

#include "disk/restore.h"
#include "net/node_log.h"

namespace kvnode {

int restoreFromBackup(const kvr::net::NodeConfig& config, const std::string& backupFile) {
  const uint64_t clusterId = config.clusterId != 0 ? config.clusterId
                                                   : kvr::net::defaultClusterId(config.members);
  kvr::ConfState conf;
  for (const auto& [id, address] : config.members) conf.voters.push_back(id);  // sorted map
  const std::string who = "kvnode " + std::to_string(config.id) + ": ";
  kvr::disk::RestoreResult result;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                result = kvr::disk::restoreDataDir(backupFile, config.dataDir,
                                                   kvr::disk::NodeIdentity{clusterId,
                                                                           config.id},
                                                   conf);
              })) {
    kvr::net::writeLogLine(who + e->getDescription().cStr());
    return 2;
  }
  kvr::net::writeLogLine(
      who + "restored data dir " + config.dataDir + " from " + backupFile + ": index " +
      std::to_string(result.header.index) + ", term " + std::to_string(result.header.term) +
      ", " + std::to_string(result.keys) + " keys; " + std::to_string(result.droppedSessions) +
      " client sessions dropped (clients open new ones); cluster " + std::to_string(clusterId) +
      " with " + std::to_string(conf.voters.size()) +
      " members. Restore every member from the same file, then start them without --restore.");
  if (clusterId == result.header.clusterId) {
    kvr::net::writeLogLine(
        who + "note: the new cluster has the same cluster id as the backup's cluster; nodes of "
              "that cluster still running on these addresses could talk to it. Pass the same "
              "--cluster-id X to every restored member to keep them apart.");
  }
  return 0;
}

}  // namespace kvnode
