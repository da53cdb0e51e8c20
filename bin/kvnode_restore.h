// kvnode --restore FILE: seeds this node's new data dir from a backup file (disk/restore.h)
// and exits. Every member of the new cluster is restored from the same file, then started
// normally with the same --id, --data-dir, --cluster (and --cluster-id) flags.
#pragma once

#include <string>

#include "net/node_config.h"

namespace kvnode {

// Returns the exit code: 0 restored, 2 refused (the message, naming the file or dir and
// what is wrong, is on stderr; no data dir is left behind).
int restoreFromBackup(const kvr::net::NodeConfig& config, const std::string& backupFile);

}  // namespace kvnode
