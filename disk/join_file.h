// The file `join` of a node that joined a running cluster (kvnode --join): the cluster's
// id and the configuration the cluster answered when it added this node as a learner.
// Written once, before the node first starts; on every later start it replaces
// --join's questions to the cluster (a restarted node needs no other member to start,
// and is never added again), and its configuration is the one the core boots from
// until the log or a snapshot holds a newer one (ReplicaConfig::initialConf).
//
// Format: "KVRJOIN1", u64 cluster id, u32 length, that many bytes of encodeConf
// (core/membership.h), u64 XXH3 of everything before it; integers little-endian.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/types.h"
#include "disk/file_system.h"

namespace kvr::disk {

constexpr const char* kJoinFileName = "join";

struct JoinRecord {
  uint64_t clusterId = 0;
  ConfState conf;
};

// Writes `dir`/join durably (a temp file, fsync, rename, fsync of the dir).
void writeJoinFile(FileSystem& fs, const std::string& dir, const JoinRecord& record);

// The record, or nullopt if there is no join file; false (with a sentence naming the
// file in *error) if it is there but damaged.
bool readJoinFile(FileSystem& fs, const std::string& dir, std::optional<JoinRecord>* out,
                  std::string* error);

}  // namespace kvr::disk
