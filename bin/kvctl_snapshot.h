// kvctl's backup commands:
//   snapshot save FILE    download a consistent, linearizable copy of the cluster's KV state
//                         (net/backup_client.h) and write it to FILE (disk/backup_file.h)
//                         atomically: FILE.tmp, fsync, rename, fsync of the directory
//   snapshot status FILE  print the file's index, term, size, key count and whether its
//                         checksum is good; exit 2 if the file is not a good backup
#pragma once

#include <string>
#include <vector>

#include "net/kv_client.h"

namespace kvctl {

// `command` starts with "snapshot". Returns kvctl's exit code (0 ok, 2 error). Must run
// before any KvClient is created on this thread (it runs its own event loop).
int snapshotCommand(const std::vector<std::string>& endpoints,
                    const kvr::client::Options& options, bool asJson,
                    const std::vector<std::string>& command);

}  // namespace kvctl
