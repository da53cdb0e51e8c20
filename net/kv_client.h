// The C++ client library of the KV store: kvctl, the cluster tests and benchmarks use it.
//
// Three layers:
//   * ClusterChannel: connections to every endpoint (one Cap'n Proto two-party RPC
//     connection each, opened lazily), leader discovery and the retry loop. A NotLeader
//     reply names the leader (node id and the client address the leader advertised to
//     its peers); the channel goes there at once, adding the address to its endpoints
//     if it was not given one (so one endpoint, any node, is enough). Transient failures
//     (Timeout, Busy, TransferInProgress, ShuttingDown, disconnects, unanswered
//     attempts, NotLeader while no leader is known) are retried with the SAME command,
//     hence the same (clientId, requestId), with backoff until the overall timeout.
//     NotLeader means "not applied"; a write's Result says whether it may have been
//     applied (Result::maybeApplied) only when that is true: an attempt that went
//     unanswered, or was answered Timeout or ShuttingDown. Commands pending on one
//     connection are sent together in one KvService.callBatch (group commit, below);
//     each keeps its own attempts, deadline and answer.
//   * AsyncKvClient: one logical client (one session) over a ClusterChannel. The session
//     is opened lazily. Writes of one session run one at a time in call order: the
//     server remembers only a session's last reply, so a retry of an older request after
//     a newer one applied could not be answered. Reads run concurrently.
//   * KvClient: the synchronous API. It owns its event loop (kj::setupAsyncIo), a
//     channel and one session; each call runs the loop until its answer.
//
// For many concurrent requests (a load generator): one kj event loop, a few
// ClusterChannels (one TCP connection per endpoint each), many AsyncKvClients per
// channel, and many promises in flight:
//
//     auto io = kj::setupAsyncIo();
//     kvr::client::ClusterChannel channel(*io.provider, io.provider->getTimer(),
//                                         {"127.0.0.1:7001", "127.0.0.1:7002"}, {});
//     kvr::client::AsyncKvClient a(channel), b(channel);
//     auto p = a.put("k", "v").then([&](Result r) { return b.get("k"); });
//     Result r = p.wait(io.waitScope);
//
// Every object here belongs to the thread whose event loop it was created on; an
// AsyncKvClient must not outlive its channel, nor a channel its provider and timer.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <kj/async-io.h>
#include <kj/timer.h>

#include "core/command.h"
#include "core/membership.h"
#include "core/rng.h"
#include "core/types.h"

namespace kvr::net {
class TlsSetup;
}

namespace kvr::client {

// TLS to nodes started with --tls-cert/--tls-key/--tls-ca. An empty caFile (and no
// certificate) means plaintext.
struct TlsOptions {
  std::string caFile;    // PEM: the CA that signed the nodes' certificates (kvctl --cacert)
  std::string certFile;  // PEM client certificate and its key, for nodes that require
  std::string keyFile;   // one (--client-cert-auth); kvctl --cert, --key
  // The name the nodes' certificates must carry ("": the host of each endpoint).
  std::string serverName;
};

struct Options {
  uint32_t timeoutMs = 5000;         // overall deadline of one operation, retries included
  uint32_t attemptTimeoutMs = 1000;  // one RPC attempt; then the endpoint is abandoned
  uint32_t maxRetries = 1000;        // attempts after the first, within the deadline
  uint32_t backoffMinMs = 5;         // first pause between attempts
  uint32_t backoffMaxMs = 100;       // pauses double up to this (each one jittered)
  bool stale = false;                // reads from any node's local state
  uint64_t clientId = 0;             // 0: open a session on first write
  uint64_t firstRequestId = 1;       // the first write's request id (then +1 per write)
  bool checkLocally = true;          // reject oversized/empty keys before sending
  TlsOptions tls;
};

enum class Outcome : uint8_t {
  Ok,
  NotFound,     // get/delete of an absent key
  CasMismatch,  // Result::value holds the current value ("" if absent)
  Error,        // Result::error says what went wrong
};

const char* outcomeName(Outcome o);

// Membership and leadership (schemas/kv.capnp AdminOp), answered by the leader.
enum class AdminOp : uint8_t {
  MemberList,
  MemberAdd,
  MemberPromote,
  MemberRemove,
  LeaderTransfer
};
struct AdminRequest {
  AdminOp op = AdminOp::MemberList;
  NodeId id = kNoNode;
  std::string raftAddr;    // MemberAdd
  std::string clientAddr;  // MemberAdd
};
struct MemberInfo {
  NodeId id = kNoNode;
  std::string raftAddr;
  std::string clientAddr;
  bool voter = false;  // else a learner
  Index match = 0;     // the leader's view of its log
  bool leader = false;
};

struct Result {
  Outcome outcome = Outcome::Error;
  std::string value;                                     // get, cas mismatch
  std::vector<std::pair<std::string, std::string>> kvs;  // range
  bool more = false;                                     // range: stopped at the limit
  Index index = 0;             // log index at which the write applied / read was served
  Status status = Status::Ok;  // the server's last status (meaningful for Error)
  std::string error;           // readable explanation when outcome is Error
  // Error of a write: true if it may have been applied (or may still be): an attempt
  // went unanswered or was answered Timeout/ShuttingDown. False: definitely not applied.
  // Always false for reads and for non-errors.
  bool maybeApplied = false;
  uint32_t attempts = 0;  // RPC attempts made
  // Admin: the configuration at the leader after the operation (Ok, or Error with status
  // Invalid), the cluster id, and why a change was refused (ConfChangeError::None if not).
  std::vector<MemberInfo> members;
  uint64_t clusterId = 0;
  Index confIndex = 0;
  bool confCommitted = false;
  ConfChangeError confError = ConfChangeError::None;
  // The request's identity, for logs and tests (0 for reads).
  uint64_t clientId = 0;
  uint64_t requestId = 0;

  bool ok() const { return outcome == Outcome::Ok; }
};

// What one endpoint said about itself (or that it did not answer).
struct EndpointStatus {
  std::string endpoint;
  bool reachable = false;
  std::string error;  // when unreachable
  NodeId id = kNoNode;
  std::string role;
  Term term = 0;
  NodeId leader = kNoNode;
  Index commit = 0;
  Index applied = 0;
  Index lastIndex = 0;
  Index snapshotIndex = 0;
  bool recovering = false;  // repairing storage damage from the leader (no vote)
  Index recoverUntil = 0;
  std::string clientAddr;  // the client address the node advertises ("" = none)
  std::string leaderAddr;  // the leader's advertised client address ("" = unknown)
};

struct Health {
  bool healthy = false;  // a leader exists and every endpoint answered
  NodeId leader = kNoNode;
  std::string message;  // why not healthy, or a one-line summary
  std::vector<EndpointStatus> endpoints;
};

// Parses "HOST:PORT,HOST:PORT"; throws kj::Exception with a readable message if empty or
// malformed.
std::vector<std::string> parseEndpointList(std::string_view list);

class ClusterChannel {
 public:
  // Throws kj::Exception with one sentence if options.tls names a bad file.
  ClusterChannel(kj::AsyncIoProvider& provider, kj::Timer& timer,
                 std::vector<std::string> endpoints, Options options);
  ~ClusterChannel() noexcept(false);
  KJ_DISALLOW_COPY(ClusterChannel);

  // Runs one command until a definite answer or the deadline; never rejects. A TLS failure
  // (a CA or certificate mismatch) or a node that requires TLS we do not speak ends it at
  // once when every known endpoint failed that way.
  kj::Promise<Result> execute(KvCommand command, bool stale);
  // Runs one membership or leadership operation at the leader, with the same retries,
  // redirects and "not applied" / "outcome unknown" answers as a write (a member list
  // as a read).
  kj::Promise<Result> admin(AdminRequest request);

  // Asks every configured endpoint for its status (concurrently, one attempt each); never
  // rejects.
  kj::Promise<std::vector<EndpointStatus>> statusAll();
  kj::Promise<Health> health();

  const Options& options() const { return options_; }
  // The configured endpoints (not those learned from NotLeader replies).
  const std::vector<std::string>& endpoints() const { return endpoints_; }
  // Every endpoint the channel may use: the configured ones, then the learned ones.
  std::vector<std::string> knownEndpoints() const;

  // At most this many endpoints are learned from replies, on top of the configured ones.
  static constexpr size_t kMaxLearnedEndpoints = 16;
  // Batching on a connection (group commit): a command is sent at the end of the loop
  // turn that queued it if no batch is in flight on its connection; otherwise it waits
  // for the batch in flight to be answered, or until the queue holds a full batch
  // (limits::kMaxBatchCommands / kMaxBatchBytes), which then goes at once, with at most
  // kMaxBatchesInFlight batches in flight per connection. At most kMaxQueuedCommands
  // commands wait per connection; one more is answered Busy (not sent) and retried after
  // a pause like a busy node.
  static constexpr size_t kMaxBatchesInFlight = 4;
  static constexpr size_t kMaxQueuedCommands = 4096;

 private:
  struct Endpoint;
  struct Connection;
  struct Attempt;
  struct Answer;
  struct Step;
  struct Queued;
  struct Batch;

  // One attempt after another until a definite answer or the deadline.
  kj::Promise<Result> attemptLoop(kj::Own<Attempt> attempt);
  kj::Promise<Answer> callOnce(Attempt& attempt, size_t endpoint);
  static kj::Promise<Answer> callAdmin(Attempt& attempt, Connection& connection);
  // Queues the attempt's command on `connection` for its next batch.
  kj::Promise<Answer> enqueue(Attempt& attempt, Connection& connection);
  // Sends what is queued on `connection` as batches, as far as the in-flight limit allows
  // (`evenIfBusy`: also when a batch is in flight, else only when none is).
  static void sendQueued(Connection& connection, bool evenIfBusy);
  static void sendBatch(Connection& connection);
  // Hands each member of an answered batch its reply (a KvService.callBatch response; a
  // template so that this header needs no generated code).
  template <typename Response>
  static void deliver(Batch& batch, Response& response);
  // A schema::Reply::Reader (a template so that this header needs no generated code).
  template <typename ReplyReader>
  static Answer decodeAnswer(ReplyReader reply);
  kj::Promise<Step> onAnswer(Attempt& attempt, size_t endpoint, Answer answer);
  kj::Promise<Step> onNotLeader(Attempt& attempt, size_t endpoint, const Answer& answer);
  kj::Promise<Step> redirect(Attempt& attempt, size_t from, size_t to);
  kj::Promise<Step> onCallFailed(Attempt& attempt, size_t endpoint, uint64_t generation,
                                 kj::Exception&& e);
  Result giveUp(const Attempt& attempt);
  Result notApplied(const Attempt& attempt, const std::string& why);
  // The endpoint of node `id`: the one whose status said so, else the one at `address`
  // (learned now if it is new and there is room); nullptr if neither is known.
  kj::Maybe<size_t> endpointOf(NodeId id, const std::string& address);
  kj::Promise<void> pause(Attempt& attempt);
  kj::Promise<EndpointStatus> statusOf(size_t endpoint, kj::Duration timeout);
  kj::Promise<void> refreshLeaderMap(kj::Duration timeout);
  kj::Promise<Connection*> connect(size_t endpoint);
  void dropConnection(size_t endpoint, uint64_t generation);
  void forgetConnecting(size_t endpoint);
  size_t pickEndpoint(Attempt& attempt);

  kj::AsyncIoProvider& provider_;
  kj::Timer& timer_;
  std::vector<std::string> endpoints_;
  Options options_;
  kj::Own<net::TlsSetup> tls_;            // null: plaintext
  std::vector<kj::Own<Endpoint>> state_;  // configured endpoints first, then learned ones
  size_t leaderGuess_ = 0;                // index into endpoints_ most likely to be the leader
  Rng jitter_;                            // the pauses' jitter (seeded per channel)
  kj::Own<kj::TaskSet> background_;
  kj::Own<kj::TaskSet::ErrorHandler> errorHandler_;
};

// One logical client (one session) over a channel.
class AsyncKvClient {
 public:
  // Options (stale, clientId, firstRequestId, checkLocally) come from channel.options()
  // unless given here.
  explicit AsyncKvClient(ClusterChannel& channel);
  AsyncKvClient(ClusterChannel& channel, const Options& options);
  KJ_DISALLOW_COPY(AsyncKvClient);

  kj::Promise<Result> put(std::string key, std::string value);
  kj::Promise<Result> get(std::string key);
  kj::Promise<Result> del(std::string key);
  kj::Promise<Result> cas(std::string key, std::string expected, std::string value);
  kj::Promise<Result> casAbsent(std::string key, std::string value);
  // Keys in [from, to), at most `limit` pairs (0 = server maximum); to "" = no end.
  kj::Promise<Result> range(std::string from, std::string to, uint32_t limit);
  // Opens the session now (otherwise the first write does). Result::clientId is its id.
  kj::Promise<Result> openSession();

  uint64_t clientId() const { return clientId_; }
  uint64_t nextRequestId() const { return nextRequestId_; }

 private:
  kj::Promise<Result> write(KvCommand command);
  kj::Promise<Result> read(KvCommand command);
  kj::Promise<Result> ensureSession();

  // The right to send this session's next write. Exactly one exists while a write runs
  // or has been handed the turn; dropping it (the write finished, or its promise was
  // dropped) hands the turn to the next waiting write, in call order. The queue is
  // shared with the turns, so a promise may outlive the client.
  struct WriteTurns;
  class Turn {
   public:
    explicit Turn(kj::Own<WriteTurns> turns) : turns_(kj::mv(turns)) {}
    Turn(Turn&& other) noexcept = default;
    Turn& operator=(Turn&&) = delete;
    ~Turn() noexcept(false);

   private:
    kj::Own<WriteTurns> turns_;
  };
  struct WriteTurns : public kj::Refcounted {
    bool writing = false;  // a write holds the turn
    // Writes waiting for the turn, in call order (at most kMaxWaitingWrites).
    std::deque<kj::Own<kj::PromiseFulfiller<Turn>>> waiting;
    void pass();
  };
  kj::Promise<Result> runWrite(KvCommand command, Turn turn);
  kj::Promise<Result> send(KvCommand command);

  ClusterChannel& channel_;
  Options options_;
  uint64_t clientId_;
  uint64_t nextRequestId_;
  kj::Own<WriteTurns> turns_;

 public:
  static constexpr size_t kMaxWaitingWrites = 4096;
};

// The synchronous client: owns a kj event loop; not thread-safe; one per thread.
class KvClient {
 public:
  explicit KvClient(std::vector<std::string> endpoints, Options options = {});
  ~KvClient() noexcept(false);
  KJ_DISALLOW_COPY(KvClient);

  Result put(std::string_view key, std::string_view value);
  Result get(std::string_view key);
  Result del(std::string_view key);
  Result cas(std::string_view key, std::string_view expected, std::string_view value);
  Result casAbsent(std::string_view key, std::string_view value);
  Result range(std::string_view from, std::string_view to, uint32_t limit = 0);
  Result openSession();
  Result admin(const AdminRequest& request);
  std::vector<EndpointStatus> status();
  Health health();

  uint64_t clientId() const;
  uint64_t nextRequestId() const;

 private:
  struct Loop;
  kj::Own<Loop> loop_;
};

}  // namespace kvr::client
