// kvctl snapshot save FILE / kvctl snapshot status FILE (see bin/kvctl_snapshot.h).
#include "bin/kvctl_snapshot.h"

#include <cstdio>

#include <kj/debug.h>

#include "core/kv.h"
#include "core/limits.h"
#include "core/text.h"
#include "disk/backup_file.h"
#include "net/backup_client.h"

namespace kvctl {

namespace {

constexpr int kExitOk = 0;
constexpr int kExitError = 2;

std::string json(const std::string& s) { return kvr::text::quoted(s, kvr::text::Quote::Json); }

int fail(const std::string& message) {
  std::fprintf(stderr, "kvctl: %s\n", message.c_str());
  return kExitError;
}

kvr::KvStore newStore() {
  kvr::KvConfig config;
  config.maxSessions = kvr::limits::kMaxSessions;  // whatever the cluster allowed
  return kvr::KvStore(config);
}

int save(const std::vector<std::string>& endpoints, const kvr::client::Options& options,
         bool asJson, const std::string& path) {
  kvr::client::SnapshotDownload d = kvr::client::downloadSnapshot(endpoints, options);
  if (!d.ok) return fail("snapshot save failed: " + d.error);
  kvr::disk::BackupHeader header;
  header.clusterId = d.clusterId;
  header.nodeId = d.nodeId;
  header.index = d.index;
  header.term = d.term;
  const std::string bytes = kvr::disk::encodeBackup(header, d.data);
  // What we write must read back: the payload is a KV snapshot at the index the node said.
  kvr::KvStore store = newStore();
  kvr::disk::BackupCheck check = kvr::disk::checkBackup(bytes, &store);
  if (!check.ok) {
    return fail("snapshot save failed: node " + std::to_string(d.nodeId) + " at " + d.endpoint +
                " sent a snapshot that does not verify: " + check.error + "; nothing written");
  }
  KJ_IF_MAYBE(e, kj::runCatchingExceptions(
                     [&]() { kvr::disk::writeFileAtomically(path, bytes); })) {
    return fail("snapshot save failed: " + std::string(e->getDescription().cStr()));
  }
  if (asJson) {
    std::printf("{\"file\":%s,\"index\":%llu,\"term\":%llu,\"clusterId\":%llu,\"node\":%u,"
                "\"size\":%zu,\"fileBytes\":%zu,\"keys\":%zu}\n",
                json(path).c_str(), static_cast<unsigned long long>(d.index),
                static_cast<unsigned long long>(d.term),
                static_cast<unsigned long long>(d.clusterId), d.nodeId, d.data.size(),
                bytes.size(), store.size());
  } else {
    std::printf("saved snapshot at index %llu (term %llu, %zu keys, %zu bytes) from node %u "
                "to %s\n",
                static_cast<unsigned long long>(d.index),
                static_cast<unsigned long long>(d.term), store.size(), bytes.size(), d.nodeId,
                path.c_str());
  }
  return kExitOk;
}

int status(bool asJson, const std::string& path) {
  std::string bytes;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { bytes = kvr::disk::readWholeFile(path); })) {
    return fail(e->getDescription().cStr());
  }
  kvr::KvStore store = newStore();
  kvr::disk::BackupCheck c = kvr::disk::checkBackup(bytes, &store);
  const auto& h = c.header;
  if (asJson) {
    std::string out = "{\"file\":" + json(path) +
                      ",\"fileBytes\":" + std::to_string(bytes.size());
    if (c.headerRead) {
      out += ",\"version\":" + std::to_string(h.version) +
             ",\"index\":" + std::to_string(h.index) + ",\"term\":" + std::to_string(h.term) +
             ",\"clusterId\":" + std::to_string(h.clusterId) +
             ",\"node\":" + std::to_string(h.nodeId) + ",\"size\":" + std::to_string(h.size);
    }
    if (c.ok) {
      out += ",\"keys\":" + std::to_string(store.size()) +
             ",\"sessions\":" + std::to_string(store.sessionCount());
    }
    out += std::string(",\"checksum\":") + (c.checksumOk ? "\"ok\"" : "\"bad\"");
    out += std::string(",\"valid\":") + (c.ok ? "true" : "false");
    if (!c.ok) out += ",\"error\":" + json(c.error);
    std::printf("%s}\n", out.c_str());
  } else if (c.headerRead) {
    std::printf("file       %s (%zu bytes)\n", path.c_str(), bytes.size());
    std::printf("version    %u\n", h.version);
    std::printf("index      %llu\n", static_cast<unsigned long long>(h.index));
    std::printf("term       %llu\n", static_cast<unsigned long long>(h.term));
    std::printf("cluster    %llu\n", static_cast<unsigned long long>(h.clusterId));
    std::printf("node       %u\n", h.nodeId);
    std::printf("size       %llu bytes\n", static_cast<unsigned long long>(h.size));
    if (c.ok) {
      std::printf("keys       %zu\n", store.size());
      std::printf("sessions   %zu\n", store.sessionCount());
    }
    std::printf("checksum   %s\n", c.checksumOk ? "ok" : "BAD");
  }
  if (!c.ok) return fail(path + ": " + c.error);
  return kExitOk;
}

}  // namespace

int snapshotCommand(const std::vector<std::string>& endpoints,
                    const kvr::client::Options& options, bool asJson,
                    const std::vector<std::string>& command) {
  if (command.size() != 3 || (command[1] != "save" && command[1] != "status")) {
    return fail("usage: kvctl snapshot save FILE  |  kvctl snapshot status FILE");
  }
  if (command[1] == "save") return save(endpoints, options, asJson, command[2]);
  return status(asJson, command[2]);
}

}  // namespace kvctl
