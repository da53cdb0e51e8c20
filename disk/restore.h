// Seeding a new node's data dir from a backup file (kvnode --restore).
//
// What a restored data dir holds: the identity (the NEW cluster id and this node's id), a
// snapshot file at the backup's index and term whose membership is the NEW member list,
// and a WAL whose hard state is (term = backup term, no vote, commit = backup index) and
// whose log is empty. So the new cluster's Raft log starts right after the backup's
// index: its first leader (term > backup term) appends its no-op at index + 1.
//
// Client sessions are dropped: a restored cluster is a new cluster, and a session of the
// old one must not be continued in it (the old cluster may have applied later requests
// of that session that the backup does not hold). Old clients get session_expired and
// open new sessions; every new session id is a log index > the backup index.
//
// Atomic: the dir is built as DIR.restore.tmp next to DIR, verified by recovering it,
// then renamed to DIR and the parent fsynced. A failure at any step leaves no DIR (and
// removes the temp dir). DIR must not exist or be an empty directory.
#pragma once

#include <cstdint>
#include <string>

#include "core/types.h"
#include "disk/backup_file.h"
#include "disk/identity.h"

namespace kvr::disk {

struct RestoreResult {
  BackupHeader header;
  size_t keys = 0;
  size_t droppedSessions = 0;
};

// Throws kj::Exception with one operator-facing sentence naming the file or dir and what
// is wrong (the message starts with "restore: "). `conf.voters` must hold `id.nodeId`.
RestoreResult restoreDataDir(const std::string& backupPath, const std::string& dataDir,
                             const NodeIdentity& id, const ConfState& conf);

}  // namespace kvr::disk
