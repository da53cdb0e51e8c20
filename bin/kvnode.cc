// kvnode: one server of the replicated KV store. See --help.
#include <getopt.h>
#include <uv.h>

#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>

#include <kj/debug.h>

#include "bin/kvnode_join.h"
#include "bin/kvnode_restore.h"
#include "core/text.h"
#include "net/log.h"
#include "net/node.h"
#include "net/node_config.h"
#include "net/node_log.h"
#include "net/uv_io.h"

namespace {

constexpr const char* kUsage = R"(usage: kvnode [options]

Runs one node of a Raft-replicated key-value store. Logs go to stderr, one line per
event with its time (UTC) and level (info, warn, error):
"2024-05-01T12:00:00.123Z info kvnode 2 term 5: became leader".

  --id N                    this node's id, 1..7 (default 1)
  --data-dir DIR            WAL, snapshots and identity (default ./data); created if
                            missing. A data dir of another node or cluster is refused,
                            and so is one another process holds (DIR/LOCK, flock).
  --client-addr HOST:PORT   KvService for clients (default 127.0.0.1:<7000+id>)
  --advertise-client-addr HOST:PORT
                            where clients can reach this node's KvService; told to
                            the peers, whose "not the leader" replies send clients here
                            (default: --client-addr; none if its host is a wildcard
                            such as 0.0.0.0, then set this)
  --raft-addr HOST:PORT     Peer-protocol listen address (default: this node's --cluster
                            entry, else 127.0.0.1:<7100+id>)
  --cluster LIST            every member's raft address: 1=HOST:PORT,2=HOST:PORT,...
                            (default: just this node, i.e. a single-node cluster).
                            Only the initial configuration: once the log holds a
                            membership change (kvctl member ...), a restarted node
                            follows its log and snapshot, whatever --cluster says
  --join ENDPOINTS          start a NEW node that joins the running cluster whose
                            client addresses are HOST:PORT,...: it asks the leader to
                            add it as a learner (--id, --raft-addr and the client
                            address it advertises), boots from the configuration the
                            cluster answers (never one of its own: it does not
                            campaign until promoted) and catches up from the leader
                            by log or snapshot. Not with --cluster. Promote it with
                            kvctl member promote ID. The data dir remembers the
                            join (DIR/join): a restart asks nobody.
  --join-timeout-ms MS      how long --join keeps asking (default 30000)
  --cluster-id X            64-bit cluster id (default: a hash of the sorted --cluster
                            list, so every member computes the same one)
  --election-timeout-ms MS  minimum election timeout; each election waits a random
                            time in [MS, 2*MS) (default 150)
  --heartbeat-ms MS         leader heartbeat interval (default 30)
  --tick-ms MS              Raft clock resolution; the times above are rounded up to
                            whole ticks (default 10)
  --request-timeout-ms MS   a client request still pending after this is answered
                            "timeout" (default 2000)
  --snapshot-entries N      take a local snapshot every N applied entries (default 100000),
                            once they add up to an eighth of the store's bytes
  --snapshot-write-mbps N   write a local snapshot's file at most N MB/s (default 50;
                            0: no limit), so the WAL's fsyncs do not wait behind it
  --max-client-connections N
                            client connections open at once (default 1024); when full, a
                            new one evicts the longest-idle one without a request in
                            flight, and is refused (with that reason) only if there is none
  --client-idle-timeout-ms MS
                            close a client connection with no request for this long
                            (default 300000; 0 = never)
  --restore FILE            seed a NEW data dir (missing or empty) from a backup file
                            written by `kvctl snapshot save`, then exit 0 (2 if the file
                            is corrupt or the dir is not empty; nothing is left behind).
                            Restore every member of the new cluster from the same file
                            with its own --id/--data-dir and the new --cluster (and
                            --cluster-id), then start each without --restore.
  --metrics-addr HOST:PORT  serve Prometheus metrics at http://HOST:PORT/metrics
                            (default: none)
  --log-format text|json    json: one object per line with ts, level, node, term
                            (null until known) and msg (default text)
  --tls-cert FILE           TLS on the client and raft ports and to the peers: this
  --tls-key FILE            node's certificate (PEM, usable for server and client auth)
  --tls-ca FILE             and key, and the CA that signed every node's certificate
                            (all three or none). Peers must present a certificate
                            signed by the CA (mutual TLS); clients need --cacert.
  --client-cert-auth        clients must present a certificate signed by --tls-ca too
  --tls-server-name NAME    the name peers' certificates must carry (default: the host
                            of their --cluster address)
  --help                    this text

Exit codes: 0 after SIGINT/SIGTERM (stops accepting, finishes the WAL write in
flight, answers pending requests "shutting down"); 1 on a fatal error while running
(a failed write or fsync: fail-stop); 2 on bad flags or when the node cannot start
(corrupt data dir, identity mismatch, data dir in use, address in use) or cannot rejoin
(its peers knew this node id with another data dir: it was wiped or replaced).
)";

[[noreturn]] void usageError(const std::string& message) {
  std::fprintf(stderr, "kvnode: %s\n(see kvnode --help)\n", message.c_str());
  std::exit(2);
}

template <typename T>
T parseNumber(const char* flag, const char* text) {
  uint64_t value = 0;
  if (kvr::text::parseUnsigned(text, &value, std::numeric_limits<T>::max()) !=
      kvr::text::NumberError::None) {
    usageError(std::string("--") + flag + " expects a non-negative number, got '" + text + "'");
  }
  return static_cast<T>(value);
}

std::string gRestoreFile;  // --restore FILE
std::string gJoin;         // --join ENDPOINTS
uint32_t gJoinTimeoutMs = 30'000;

kvr::net::NodeConfig parseFlags(int argc, char** argv) {
  enum Opt {
    kId = 1000,
    kDataDir,
    kClientAddr,
    kAdvertiseClientAddr,
    kRaftAddr,
    kCluster,
    kClusterId,
    kElection,
    kHeartbeat,
    kTick,
    kRequestTimeout,
    kSnapshotEntries,
    kSnapshotWriteMBps,
    kMaxClientConnections,
    kClientIdleTimeout,
    kMetricsAddr,
    kLogFormat,
    kHelp,
    kRestore,
    kTlsCert,
    kTlsKey,
    kTlsCa,
    kClientCertAuth,
    kTlsServerName,
    kJoin,
    kJoinTimeout
  };
  static const option options[] = {
      {"id", required_argument, nullptr, kId},
      {"data-dir", required_argument, nullptr, kDataDir},
      {"client-addr", required_argument, nullptr, kClientAddr},
      {"advertise-client-addr", required_argument, nullptr, kAdvertiseClientAddr},
      {"raft-addr", required_argument, nullptr, kRaftAddr},
      {"cluster", required_argument, nullptr, kCluster},
      {"cluster-id", required_argument, nullptr, kClusterId},
      {"election-timeout-ms", required_argument, nullptr, kElection},
      {"heartbeat-ms", required_argument, nullptr, kHeartbeat},
      {"tick-ms", required_argument, nullptr, kTick},
      {"request-timeout-ms", required_argument, nullptr, kRequestTimeout},
      {"snapshot-entries", required_argument, nullptr, kSnapshotEntries},
      {"snapshot-write-mbps", required_argument, nullptr, kSnapshotWriteMBps},
      {"max-client-connections", required_argument, nullptr, kMaxClientConnections},
      {"client-idle-timeout-ms", required_argument, nullptr, kClientIdleTimeout},
      {"metrics-addr", required_argument, nullptr, kMetricsAddr},
      {"log-format", required_argument, nullptr, kLogFormat},
      {"help", no_argument, nullptr, kHelp},
      {"restore", required_argument, nullptr, kRestore},
      {"tls-cert", required_argument, nullptr, kTlsCert},
      {"tls-key", required_argument, nullptr, kTlsKey},
      {"tls-ca", required_argument, nullptr, kTlsCa},
      {"client-cert-auth", no_argument, nullptr, kClientCertAuth},
      {"tls-server-name", required_argument, nullptr, kTlsServerName},
      {"join", required_argument, nullptr, kJoin},
      {"join-timeout-ms", required_argument, nullptr, kJoinTimeout},
      {nullptr, 0, nullptr, 0},
  };
  kvr::net::NodeConfig c;
  std::string cluster;
  int opt;
  opterr = 0;
  while ((opt = getopt_long(argc, argv, "", options, nullptr)) != -1) {
    const char* flag = optind > 0 && optind <= argc ? argv[optind - 1] : "";
    switch (opt) {
      case kId: c.id = parseNumber<uint32_t>("id", optarg); break;
      case kDataDir: c.dataDir = optarg; break;
      case kClientAddr: c.clientAddr = optarg; break;
      case kAdvertiseClientAddr: c.advertiseClientAddr = optarg; break;
      case kRaftAddr: c.raftAddr = optarg; break;
      case kCluster: cluster = optarg; break;
      case kClusterId: c.clusterId = parseNumber<uint64_t>("cluster-id", optarg); break;
      case kElection:
        c.electionTimeoutMs = parseNumber<uint32_t>("election-timeout-ms", optarg);
        break;
      case kHeartbeat: c.heartbeatMs = parseNumber<uint32_t>("heartbeat-ms", optarg); break;
      case kTick: c.tickMs = parseNumber<uint32_t>("tick-ms", optarg); break;
      case kRequestTimeout:
        c.requestTimeoutMs = parseNumber<uint32_t>("request-timeout-ms", optarg);
        break;
      case kSnapshotEntries:
        c.snapshotEntries = parseNumber<uint64_t>("snapshot-entries", optarg);
        break;
      case kSnapshotWriteMBps:
        c.snapshotWriteMBps = parseNumber<uint32_t>("snapshot-write-mbps", optarg);
        break;
      case kMaxClientConnections:
        c.maxClientConnections = parseNumber<uint32_t>("max-client-connections", optarg);
        break;
      case kClientIdleTimeout:
        c.clientIdleTimeoutMs = parseNumber<uint32_t>("client-idle-timeout-ms", optarg);
        break;
      case kMetricsAddr: c.metricsAddr = optarg; break;
      case kLogFormat: {
        kvr::net::LogFormat format;
        if (!kvr::net::parseLogFormat(optarg, &format)) {
          usageError(std::string("--log-format expects text or json, got '") + optarg + "'");
        }
        kvr::net::setLogFormat(format);
        break;
      }
      case kHelp: std::fputs(kUsage, stdout); std::exit(0);
      case kRestore: gRestoreFile = optarg; break;
      case kTlsCert: c.tls.certFile = optarg; break;
      case kTlsKey: c.tls.keyFile = optarg; break;
      case kTlsCa: c.tls.caFile = optarg; break;
      case kClientCertAuth: c.clientCertAuth = true; break;
      case kTlsServerName: c.tlsServerName = optarg; break;
      case kJoin: gJoin = optarg; break;
      case kJoinTimeout:
        gJoinTimeoutMs = parseNumber<uint32_t>("join-timeout-ms", optarg);
        if (gJoinTimeoutMs == 0) usageError("--join-timeout-ms must be > 0");
        break;
      default: usageError(std::string("unknown or incomplete option '") + flag + "'");
    }
  }
  if (optind < argc) usageError(std::string("unexpected argument '") + argv[optind] + "'");

  if (!gJoin.empty() && (!cluster.empty() || !gRestoreFile.empty())) {
    usageError("--join starts a new member of a running cluster; it goes with neither "
               "--cluster nor --restore");
  }
  if (!gJoin.empty() && c.clusterId != 0) {
    usageError("--join learns the cluster id from the cluster; drop --cluster-id");
  }
  if (!cluster.empty()) {
    std::string error;
    if (!kvr::net::parseMembers(cluster, &c.members, &error)) usageError(error);
  }
  if (c.raftAddr.empty()) {
    auto it = c.members.find(c.id);
    c.raftAddr = it != c.members.end() ? it->second
                                       : "127.0.0.1:" + std::to_string(7100 + c.id);
  }
  if (c.members.empty()) c.members[c.id] = c.raftAddr;
  if (c.clientAddr.empty()) c.clientAddr = "127.0.0.1:" + std::to_string(7000 + c.id);
  std::string problem = kvr::net::checkConfig(c);
  if (!problem.empty()) usageError(problem);
  if (!gJoin.empty()) {
    c.clusterId = 1;  // replaced by the cluster's
    std::string error;
    if (!kvnode::prepareJoin(c, gJoin, gJoinTimeoutMs, &error)) {
      kvr::net::logEvent(kvr::net::LogLevel::Error, c.id, std::nullopt,
                         "cannot start: " + error);
      std::exit(2);
    }
    problem = kvr::net::checkConfig(c);
    if (!problem.empty()) usageError(problem);
  }
  return c;
}

struct Shutdown {
  kvr::net::Node* node = nullptr;
  kj::Maybe<kj::Promise<void>> done;
  int signals = 0;
};

void onSignal(uv_signal_t* handle, int signum) {
  auto* s = static_cast<Shutdown*>(handle->data);
  if (s == nullptr) return;
  if (++s->signals > 1) {
    kvr::net::failStop("second signal " + std::to_string(signum) +
                       " during shutdown; exiting now");
  }
  uv_loop_t* loop = handle->loop;
  s->done = s->node->shutdown()
                .then([loop]() { uv_stop(loop); },
                      [loop](kj::Exception&& e) {
                        kvr::net::logEvent(kvr::net::LogLevel::Error, kvr::net::logNode(),
                                           std::nullopt,
                                           std::string("shutdown failed: ") +
                                               e.getDescription().cStr());
                        uv_stop(loop);
                      })
                .eagerlyEvaluate(nullptr);
}

}  // namespace

int main(int argc, char** argv) {
  kvr::net::NodeConfig config = parseFlags(argc, argv);
  kvr::net::setLogNode(config.id);
  kvr::net::KjLogRedirect kjLog;  // kj's and capnp's own warnings in the same format
  if (!gRestoreFile.empty()) return kvnode::restoreFromBackup(config, gRestoreFile);
  ::signal(SIGPIPE, SIG_IGN);  // a peer closing its socket must not kill us

  uv_loop_t loop;
  KJ_ASSERT(uv_loop_init(&loop) == 0);
  {
    kvr::net::UvAsyncIo io(&loop);
    kvr::net::Node node(io, config);
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { node.start().wait(io.waitScope()); })) {
      kvr::net::logEvent(kvr::net::LogLevel::Error, config.id, std::nullopt,
                         std::string("cannot start: ") + e->getDescription().cStr());
      ::_exit(2);  // nothing to clean up that matters; the data dir was not changed
    }

    Shutdown shutdown;
    shutdown.node = &node;
    kvr::net::UvHandle<uv_signal_t> sigint;
    kvr::net::UvHandle<uv_signal_t> sigterm;
    for (auto* h : {&sigint, &sigterm}) {
      h->checkInit(uv_signal_init(&loop, h->get()), "uv_signal_init");
      h->get()->data = &shutdown;
    }
    uv_signal_start(sigint.get(), onSignal, SIGINT);
    uv_signal_start(sigterm.get(), onSignal, SIGTERM);

    uv_run(&loop, UV_RUN_DEFAULT);
    shutdown.done = nullptr;
    kvr::net::logEvent(kvr::net::LogLevel::Info, config.id,
                       uint64_t(node.replica().status().term), "stopped");
  }
  for (int i = 0; i < 10 && uv_run(&loop, UV_RUN_NOWAIT) != 0; ++i) {
  }
  uv_loop_close(&loop);  // may report busy if a peer socket is still closing; harmless
  return 0;
}
