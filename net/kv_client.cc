#include "net/kv_client.h"

#include <algorithm>
#include <deque>
#include <optional>
#include <random>

#include <capnp/rpc-twoparty.h>
#include <kj/debug.h>

#include "core/limits.h"
#include "net/buffered_stream.h"
#include "net/client_tls.h"
#include "net/rpc_listener.h"  // kRefusedConnectionPrefix, kTlsRequiredReason only
#include "net/tls.h"
#include "schemas/codec.h"
#include "schemas/kv.capnp.h"

namespace kvr::client {

const char* outcomeName(Outcome o) {
  switch (o) {
    case Outcome::Ok: return "ok";
    case Outcome::NotFound: return "not found";
    case Outcome::CasMismatch: return "cas mismatch";
    case Outcome::Error: return "error";
  }
  return "unknown";
}

namespace {

// The least time left on a request's deadline for which a later attempt is started (or
// the attempt timeout, or a tenth of the request's timeout, if smaller): see attemptLoop.
constexpr uint32_t kMinLaterAttemptMs = 100;

bool hasHostAndPort(std::string_view item) {
  size_t colon = item.rfind(':');
  return colon != std::string_view::npos && colon > 0 && colon + 1 < item.size();
}

bool hasNumericPort(std::string_view item) {
  return item.find_first_not_of("0123456789", item.rfind(':') + 1) == std::string_view::npos;
}

}  // namespace

std::vector<std::string> parseEndpointList(std::string_view list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string_view::npos) comma = list.size();
    std::string item(list.substr(start, comma - start));
    KJ_REQUIRE(!item.empty(), "empty endpoint in list", std::string(list));
    KJ_REQUIRE(hasHostAndPort(item), "endpoint must look like HOST:PORT", item);
    KJ_REQUIRE(hasNumericPort(item), "endpoint port must be a number", item);
    out.push_back(std::move(item));
    start = comma + 1;
  }
  KJ_REQUIRE(!out.empty(), "no endpoints given");
  KJ_REQUIRE(out.size() <= 64, "too many endpoints", out.size());
  return out;
}

kj::Own<net::TlsSetup> makeClientTls(const TlsOptions& tls) {
  if (tls.caFile.empty() && tls.certFile.empty() && tls.keyFile.empty()) return {};
  if (tls.caFile.empty()) {
    kj::throwFatalException(KJ_EXCEPTION(FAILED, "TLS needs --cacert (the CA that signed the "
                                                 "nodes' certificates)"));
  }
  net::TlsFiles files;
  files.caFile = tls.caFile;
  files.certFile = tls.certFile;
  files.keyFile = tls.keyFile;
  files.caFlag = "--cacert";
  files.certFlag = "--cert";
  files.keyFlag = "--key";
  return kj::heap<net::TlsSetup>(files, /*requireCert=*/false, /*requireClientCert=*/false);
}

namespace {

std::string describe(const kj::Exception& e) {
  std::string text(e.getDescription().cStr());
  // kj prefixes syscall failures with the failing call; keep the message short.
  for (const char* noise : {"remote exception: ", "kj/async-io-unix.c++"}) {
    size_t at = text.find(noise);
    if (at == 0) text.erase(0, std::string(noise).size());
  }
  if (text.size() > 300) text.resize(300);
  return text;
}

// describe(), with TLS failures in an operator's words.
std::string describeCause(const kj::Exception& e) {
  if (!net::isTlsFailure(e)) return describe(e);
  std::string text = net::describeTlsFailure(e);
  return text.rfind("TLS handshake with ", 0) == 0 ? text : "TLS: " + text;
}

// What went wrong talking to `address`, for Result::error. A node that refuses a
// connection (too many) sends an Abort whose reason starts with kRefusedConnectionPrefix:
// "node HOST:PORT refused the connection: too many client connections (...)".
std::string describeFailure(const std::string& address, const kj::Exception& e) {
  std::string text = describeCause(e);
  if (text.rfind(net::kRefusedConnectionPrefix, 0) == 0) return "node " + address + " " + text;
  if (text.rfind("TLS handshake with ", 0) == 0) return text;  // names the address
  return address + ": " + text;
}

// The Abort of a TLS port to a plaintext client: it served nothing on that connection.
bool isTlsRequiredRefusal(const kj::Exception& e) {
  return describe(e) == std::string(net::kRefusedConnectionPrefix) + net::kTlsRequiredReason;
}

bool isTransient(Status s) {
  return s == Status::NotLeader || s == Status::Timeout || s == Status::Busy ||
         s == Status::TransferInProgress || s == Status::ShuttingDown;
}

// Answers after which a write may have been applied (or may still be): the request was
// in the log, and then the node gave up waiting (Timeout) or went away (ShuttingDown).
// Busy, TransferInProgress and NotLeader refuse before or instead of applying.
bool mayHaveApplied(Status s) { return s == Status::Timeout || s == Status::ShuttingDown; }

class IgnoreErrors final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&&) override {}
};

}  // namespace

// The server's answer, decoded.
struct ClusterChannel::Answer {
  KvReply reply;
  std::string error;
  std::string leaderAddr;  // NotLeader: the leader's client address, if the node knows it
  Result admin;            // admin: members, cluster id, conf index, conf error
};

// One attempt's verdict: a definite result, or try again. (Not a kj::Maybe<Result>: GCC
// 12 at -O2 reports a false maybe-uninitialized on that inside kj's promise nodes.)
struct ClusterChannel::Step {
  bool done = false;
  Result result;
  static Step finished(Result r) {
    Step s;
    s.done = true;
    s.result = std::move(r);
    return s;
  }
};

// A command waiting on a connection for its batch (or in a batch in flight).
struct ClusterChannel::Queued {
  kj::Own<Attempt> attempt;  // its command; `sent` is set when its batch goes
  kj::Own<kj::PromiseFulfiller<Answer>> answer;
};

// One batch in flight. Whatever it still holds when it is destroyed (the connection went
// away with it) is failed as a disconnect: sent, no answer.
struct ClusterChannel::Batch {
  std::vector<Queued> members;
  Batch() = default;
  Batch(Batch&&) = default;
  Batch& operator=(Batch&&) = default;
  ~Batch() noexcept(false) {
    for (auto& m : members) {
      if (m.answer.get() != nullptr && m.answer->isWaiting()) {
        m.answer->reject(KJ_EXCEPTION(DISCONNECTED, "connection closed before the answer"));
      }
    }
  }
};

struct ClusterChannel::Connection {
  Connection(kj::Own<kj::AsyncIoStream> s, uint64_t gen, kj::TaskSet::ErrorHandler& errors)
      : stream(kj::heap<net::BufferedReadStream>(kj::mv(s))),
        rpc(kj::heap<capnp::TwoPartyClient>(*stream)),
        service(rpc->bootstrap().castAs<schema::KvService>()),
        generation(gen),
        tasks(errors) {}
  ~Connection() noexcept(false) { failQueued("connection closed before the request was sent"); }
  // Fails what waits for a batch (never sent, so never applied).
  void failQueued(const char* why) {
    for (auto& q : queue) {
      if (q.answer->isWaiting()) q.answer->reject(KJ_EXCEPTION(DISCONNECTED, why));
    }
    queue.clear();
  }
  // Declaration order matters: destroyed the batches in flight, service, then rpc, then
  // the stream under it.
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyClient> rpc;
  schema::KvService::Client service;
  uint64_t generation;
  std::deque<Queued> queue;  // commands for the next batch, at most kMaxQueuedCommands
  size_t inFlight = 0;       // batches sent, not answered yet
  bool flushScheduled = false;
  bool broken = false;  // a batch failed: nothing more is sent on it
  kj::TaskSet tasks;    // the batches in flight and the scheduled flush
};

struct ClusterChannel::Endpoint {
  std::string address;
  NodeId id = kNoNode;  // learned from status() or a NotLeader reply; kNoNode until then
  kj::Maybe<kj::Own<Connection>> connection;
  kj::Maybe<kj::ForkedPromise<void>> connecting;
  uint64_t generation = 0;     // bumped per connection, so a stale failure drops nothing
  bool misconfigured = false;  // its last failure was a refusal of our TLS or its absence
};

struct ClusterChannel::Attempt : public kj::Refcounted {
  KvCommand command;
  std::optional<AdminRequest> admin;  // an admin operation instead of `command`
  bool stale = false;
  kj::TimePoint deadline = kj::origin<kj::TimePoint>();
  uint32_t attempts = 0;
  uint32_t backoffMs = 0;
  uint32_t redirectsInARow = 0;
  kj::Maybe<size_t> target;  // where the last NotLeader reply pointed
  std::string lastError;
  Status lastStatus = Status::Ok;
  uint64_t generation = 0;    // of the connection this attempt's request went to
  bool sent = false;          // this attempt's request was handed to a connection
  bool maybeApplied = false;  // a write: some attempt may have been applied
  bool noLeaderSeen = false;  // some node answered NotLeader: none knew a leader then

  bool isWrite() const { return admin ? admin->op != AdminOp::MemberList : command.isWrite(); }
};

ClusterChannel::ClusterChannel(kj::AsyncIoProvider& provider, kj::Timer& timer,
                               std::vector<std::string> endpoints, Options options)
    : provider_(provider),
      timer_(timer),
      endpoints_(std::move(endpoints)),
      options_(options),
      tls_(makeClientTls(options_.tls)),
      jitter_((uint64_t(std::random_device{}()) << 32) ^ reinterpret_cast<uintptr_t>(this)),
      errorHandler_(kj::heap<IgnoreErrors>()) {
  KJ_REQUIRE(!endpoints_.empty(), "a client needs at least one endpoint");
  KJ_REQUIRE(options_.timeoutMs > 0 && options_.attemptTimeoutMs > 0, "timeouts must be > 0");
  for (auto& e : endpoints_) {
    auto ep = kj::heap<Endpoint>();
    ep->address = e;
    state_.push_back(kj::mv(ep));
  }
  background_ = kj::heap<kj::TaskSet>(*errorHandler_);
}

std::vector<std::string> ClusterChannel::knownEndpoints() const {
  std::vector<std::string> out;
  for (auto& ep : state_) out.push_back(ep->address);
  return out;
}

ClusterChannel::~ClusterChannel() noexcept(false) {
  background_ = nullptr;
  for (auto& ep : state_) {
    ep->connecting = nullptr;
    ep->connection = nullptr;
  }
}

kj::Promise<ClusterChannel::Connection*> ClusterChannel::connect(size_t i) {
  Endpoint& ep = *state_[i];
  KJ_IF_MAYBE(c, ep.connection) {
    return c->get();
  }
  if (ep.connecting == nullptr) {
    auto connecting =
        provider_.getNetwork()
            .parseAddress(ep.address.c_str())
            .then([](kj::Own<kj::NetworkAddress> addr) {
              return addr->connect().attach(kj::mv(addr));
            })
            .then([this, i](kj::Own<kj::AsyncIoStream> stream) -> kj::Promise<void> {
              Endpoint& e = *state_[i];
              if (tls_.get() == nullptr) {
                e.connection = kj::heap<Connection>(kj::mv(stream), ++e.generation,
                                                    *errorHandler_);
                return kj::READY_NOW;
              }
              return tls_->connect(kj::mv(stream), e.address, options_.tls.serverName)
                  .then([this, i](kj::Own<kj::AsyncIoStream> secure) {
                    Endpoint& e = *state_[i];
                    auto c = kj::heap<Connection>(kj::mv(secure), ++e.generation,
                                                  *errorHandler_);
                    // With TLS 1.3 a server that refuses our certificate says so only
                    // after our side of the handshake is done. One round trip (the
                    // bootstrap) before any request shows it, so a refused connection
                    // never counts as a request that may have been applied.
                    auto resolved = c->service.whenResolved();
                    return resolved
                        .then([this, i, c = kj::mv(c)]() mutable {
                          state_[i]->connection = kj::mv(c);
                        })
                        .catch_([this, i](kj::Exception&& e) {
                          if (!net::isTlsFailure(e)) kj::throwFatalException(kj::mv(e));
                          kj::throwFatalException(
                              KJ_EXCEPTION(DISCONNECTED,
                                           kj::str("TLS handshake with ",
                                                   state_[i]->address.c_str(),
                                                   " failed: ", tls_->explain(e).c_str())));
                        });
                  });
            })
            .then([this, i]() { forgetConnecting(i); },
                  [this, i](kj::Exception&& ex) {
                    forgetConnecting(i);
                    kj::throwFatalException(kj::mv(ex));
                  });
    ep.connecting = connecting.fork();
  }
  auto& forked = KJ_ASSERT_NONNULL(ep.connecting);
  return forked.addBranch().then([this, i]() -> Connection* {
    KJ_IF_MAYBE(c, state_[i]->connection) {
      return c->get();
    }
    KJ_FAIL_REQUIRE("connection closed while opening", state_[i]->address);
  });
}

void ClusterChannel::forgetConnecting(size_t i) {
  // We run inside the forked promise's own chain: release it from a later turn, so the
  // fork is never destroyed while it is running this callback.
  KJ_IF_MAYBE(f, state_[i]->connecting) {
    auto fork = kj::mv(*f);
    state_[i]->connecting = nullptr;
    background_->add(kj::evalLater([fork = kj::mv(fork)]() mutable {}));
  }
}

void ClusterChannel::dropConnection(size_t i, uint64_t generation) {
  Endpoint& ep = *state_[i];
  KJ_IF_MAYBE(c, ep.connection) {
    if ((*c)->generation != generation) return;
    // Destroy it from a fresh turn of the loop, not from inside one of its own callbacks.
    auto dead = kj::mv(*c);
    ep.connection = nullptr;
    background_->add(kj::evalLater([dead = kj::mv(dead)]() mutable { dead = nullptr; }));
  }
}

size_t ClusterChannel::pickEndpoint(Attempt& a) {
  KJ_IF_MAYBE(t, a.target) {
    return *t;
  }
  return leaderGuess_ % state_.size();
}

kj::Promise<void> ClusterChannel::pause(Attempt& a) {
  if (a.backoffMs == 0) {
    a.backoffMs = std::max<uint32_t>(1, options_.backoffMinMs);
  } else {
    a.backoffMs = std::min(options_.backoffMaxMs, a.backoffMs * 2);
  }
  // Jitter: at random in [bound / 2, bound], in microseconds, so that clients refused
  // together (a busy node sheds them all at once) do not come back together.
  const uint64_t boundUs = uint64_t(a.backoffMs) * 1000;
  kj::Duration delay = jitter_.between(boundUs - boundUs / 2, boundUs) * kj::MICROSECONDS;
  kj::Duration left = a.deadline - timer_.now();
  if (left < delay) delay = left > 0 * kj::NANOSECONDS ? left : 0 * kj::NANOSECONDS;
  return timer_.afterDelay(delay);
}

kj::Promise<Result> ClusterChannel::execute(KvCommand command, bool stale) {
  auto a = kj::refcounted<Attempt>();
  a->command = std::move(command);
  a->stale = stale;
  a->deadline = timer_.now() + options_.timeoutMs * kj::MILLISECONDS;
  return attemptLoop(kj::mv(a));
}

kj::Promise<Result> ClusterChannel::admin(AdminRequest request) {
  auto a = kj::refcounted<Attempt>();
  a->admin = std::move(request);
  a->deadline = timer_.now() + options_.timeoutMs * kj::MILLISECONDS;
  return attemptLoop(kj::mv(a));
}

kj::Promise<Result> ClusterChannel::attemptLoop(kj::Own<Attempt> attempt) {
  Attempt& a = *attempt;
  kj::Duration left = a.deadline - timer_.now();
  // A later attempt needs time to be answered: one cut off by the deadline after a few
  // milliseconds ends as a timeout, and a timed-out write turns the definite "not
  // applied" of the answers before it into "outcome unknown" (cluster_no_leader saw a
  // 24th attempt get what was left of 1.5 s). So none starts with less than this left.
  const kj::Duration minLater = std::min({options_.attemptTimeoutMs, kMinLaterAttemptMs,
                                          options_.timeoutMs / 10}) *
                                kj::MILLISECONDS;
  if (a.attempts > 0 && (left < minLater || a.attempts > options_.maxRetries)) {
    return giveUp(a);
  }
  size_t i = pickEndpoint(a);
  a.target = nullptr;
  a.sent = false;
  ++a.attempts;
  kj::Duration budget = options_.attemptTimeoutMs * kj::MILLISECONDS;
  if (a.attempts > 1 && left < budget) budget = left;
  if (budget < 1 * kj::MILLISECONDS) budget = 1 * kj::MILLISECONDS;

  a.generation = 0;
  return timer_.timeoutAfter(budget, callOnce(a, i))
      .then([this, &a, i](Answer ans) { return onAnswer(a, i, kj::mv(ans)); },
            [this, &a, i](kj::Exception&& e) {
              return onCallFailed(a, i, a.generation, kj::mv(e));
            })
      .then([this, attempt = kj::mv(attempt)](Step step) mutable -> kj::Promise<Result> {
        if (step.done) return kj::mv(step.result);
        return attemptLoop(kj::mv(attempt));
      });
}

template <typename ReplyReader>
ClusterChannel::Answer ClusterChannel::decodeAnswer(ReplyReader reply) {
  Answer ans;
  std::string why;
  KJ_REQUIRE(codec::fromCapnp(reply, &ans.reply, &why), "malformed reply", why);
  ans.error = reply.getError().cStr();
  ans.leaderAddr = reply.getLeaderAddr().cStr();
  return ans;
}

kj::Promise<ClusterChannel::Answer> ClusterChannel::callAdmin(Attempt& a, Connection& c) {
  auto req = c.service.adminRequest();
  auto out = req.initRequest();
  const AdminRequest& r = *a.admin;
  switch (r.op) {
    case AdminOp::MemberList: out.setOp(schema::AdminOp::MEMBER_LIST); break;
    case AdminOp::MemberAdd: out.setOp(schema::AdminOp::MEMBER_ADD); break;
    case AdminOp::MemberPromote: out.setOp(schema::AdminOp::MEMBER_PROMOTE); break;
    case AdminOp::MemberRemove: out.setOp(schema::AdminOp::MEMBER_REMOVE); break;
    case AdminOp::LeaderTransfer: out.setOp(schema::AdminOp::LEADER_TRANSFER); break;
  }
  out.setId(r.id);
  out.setRaftAddr(r.raftAddr);
  out.setClientAddr(r.clientAddr);
  a.sent = true;
  return req.send().then([](capnp::Response<schema::KvService::AdminResults> resp) {
    Answer ans = decodeAnswer(resp.getReply());
    KJ_REQUIRE(resp.getMembers().size() <= limits::kMaxNodes, "too many members in a reply");
    for (auto m : resp.getMembers()) {
      MemberInfo info;
      info.id = m.getId();
      info.raftAddr = m.getRaftAddr().cStr();
      info.clientAddr = m.getClientAddr().cStr();
      info.voter = m.getVoter();
      info.match = m.getMatch();
      info.leader = m.getLeader();
      ans.admin.members.push_back(std::move(info));
    }
    ans.admin.clusterId = resp.getClusterId();
    ans.admin.confIndex = resp.getConfIndex();
    ans.admin.confCommitted = resp.getConfCommitted();
    uint8_t code = resp.getConfError();
    ans.admin.confError = code <= static_cast<uint8_t>(ConfChangeError::BadAddress)
                              ? static_cast<ConfChangeError>(code)
                              : ConfChangeError::None;
    return ans;
  });
}

kj::Promise<ClusterChannel::Answer> ClusterChannel::callOnce(Attempt& a, size_t i) {
  // An open connection: straight to it, no promise hop (the common case under load).
  KJ_IF_MAYBE(c, state_[i]->connection) {
    a.generation = (*c)->generation;
    if (a.admin) return callAdmin(a, **c);
    return enqueue(a, **c);
  }
  return connect(i).then([this, &a](Connection* c) -> kj::Promise<Answer> {
    a.generation = c->generation;
    if (a.admin) return callAdmin(a, *c);
    return enqueue(a, *c);
  });
}

namespace {

// What a command adds to a batch request, roughly (for the byte cap and the size hint).
size_t commandBytes(const KvCommand& c) {
  return c.key.size() + c.value.size() + c.expected.size() + c.rangeEnd.size() + 96;
}

// Batches are cut well below the server's byte limit (our estimate is rough).
constexpr size_t kBatchBytesCap = limits::kMaxBatchBytes / 2;

}  // namespace

kj::Promise<ClusterChannel::Answer> ClusterChannel::enqueue(Attempt& a, Connection& c) {
  if (c.queue.size() >= kMaxQueuedCommands) {
    Answer busy;
    busy.reply.status = Status::Busy;
    busy.error = "the client has " + std::to_string(c.queue.size()) +
                 " requests queued on this connection (the limit); not sent";
    return kj::mv(busy);
  }
  if (c.broken) {
    return KJ_EXCEPTION(DISCONNECTED, "connection failed before the request was sent");
  }
  auto paf = kj::newPromiseAndFulfiller<Answer>();
  c.queue.push_back(Queued{kj::addRef(a), kj::mv(paf.fulfiller)});
  if (c.queue.size() >= limits::kMaxBatchCommands) {
    sendQueued(c, /*evenIfBusy=*/true);
  } else if (c.inFlight == 0 && !c.flushScheduled) {
    // Idle: send at the end of this turn, with whatever else this turn queues.
    c.flushScheduled = true;
    c.tasks.add(kj::evalLater([&c]() {
      c.flushScheduled = false;
      sendQueued(c, /*evenIfBusy=*/false);
    }));
  }
  return kj::mv(paf.promise);
}

void ClusterChannel::sendQueued(Connection& c, bool evenIfBusy) {
  if (c.broken || (!evenIfBusy && c.inFlight > 0)) return;
  while (!c.queue.empty() && c.inFlight < kMaxBatchesInFlight) {
    sendBatch(c);
    // Only full batches go while another is in flight; the rest waits for an answer.
    if (c.queue.size() < limits::kMaxBatchCommands) break;
  }
}

void ClusterChannel::sendBatch(Connection& c) {
  auto batch = kj::heap<Batch>();
  size_t bytes = 0;
  while (!c.queue.empty() && batch->members.size() < limits::kMaxBatchCommands) {
    Queued& q = c.queue.front();
    if (!q.answer->isWaiting()) {  // its attempt gave up before it was sent
      c.queue.pop_front();
      continue;
    }
    size_t more = commandBytes(q.attempt->command);
    if (!batch->members.empty() && bytes + more > kBatchBytesCap) break;
    bytes += more;
    batch->members.push_back(kj::mv(q));
    c.queue.pop_front();
  }
  if (batch->members.empty()) return;
  auto req = c.service.callBatchRequest(
      capnp::MessageSize{bytes / sizeof(capnp::word) + 8 * batch->members.size() + 16, 0});
  auto items = req.initItems(static_cast<uint>(batch->members.size()));
  for (uint k = 0; k < batch->members.size(); ++k) {
    Attempt& a = *batch->members[k].attempt;
    codec::toCapnp(a.command, items[k].initCommand());
    items[k].setStale(a.stale);
    a.sent = true;
  }
  ++c.inFlight;
  Batch& b = *batch;
  c.tasks.add(req.send()
                  .then(
                      [&b](capnp::Response<schema::KvService::CallBatchResults> resp) {
                        deliver(b, resp);
                      },
                      [&b, &c](kj::Exception&& e) {
                        // Sent, unanswered: each member may have been applied. What
                        // waits behind them is not sent on this connection any more.
                        for (auto& m : b.members) m.answer->reject(kj::cp(e));
                        c.broken = true;
                        c.failQueued("connection failed before the request was sent");
                      })
                  .attach(kj::mv(batch))
                  .then([&c]() {
                    --c.inFlight;
                    sendQueued(c, /*evenIfBusy=*/false);
                  }));
}

template <typename Response>
void ClusterChannel::deliver(Batch& b, Response& resp) {
  auto replies = resp.getReplies();
  bool refused = replies.size() == 0 && resp.hasRefused();
  if (!refused && replies.size() != b.members.size()) {
    for (auto& m : b.members) {
      m.answer->reject(KJ_EXCEPTION(FAILED, "malformed batch reply: wrong number of replies",
                                    replies.size(), b.members.size()));
    }
    return;
  }
  // A refused batch (it would have to be malformed: we split by the same limits): each
  // member gets the refusal.
  for (uint k = 0; k < b.members.size(); ++k) {
    auto& m = b.members[k];
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                  m.answer->fulfill(decodeAnswer(refused ? resp.getRefused() : replies[k]));
                })) {
      m.answer->reject(kj::mv(*e));
    }
  }
}

kj::Promise<ClusterChannel::Step> ClusterChannel::onAnswer(Attempt& a, size_t i, Answer ans) {
  const KvReply& rep = ans.reply;
  a.lastStatus = rep.status;
  if (rep.status == Status::NotLeader && rep.leaderHint == kNoNode) a.noLeaderSeen = true;
  state_[i]->misconfigured = false;
  if (!a.stale) leaderGuess_ = i;
  if (!isTransient(rep.status)) {
    Result r = kj::mv(ans.admin);
    r.attempts = a.attempts;
    r.status = rep.status;
    r.index = rep.index;
    r.clientId = a.command.clientId;
    r.requestId = a.command.requestId;
    switch (rep.status) {
      case Status::Ok:
        r.outcome = Outcome::Ok;
        r.value = rep.value;
        r.kvs = rep.kvs;
        r.more = rep.more;
        if (a.command.op == OpType::OpenSession) r.clientId = rep.clientId;
        break;
      case Status::NotFound: r.outcome = Outcome::NotFound; break;
      case Status::CasMismatch:
        r.outcome = Outcome::CasMismatch;
        r.value = rep.value;
        break;
      default:
        r.outcome = Outcome::Error;
        r.maybeApplied = a.maybeApplied;
        r.error = std::string(statusName(rep.status)) + ": " +
                  (ans.error.empty() ? std::string("(no detail)") : ans.error);
    }
    return Step::finished(kj::mv(r));
  }
  a.lastError = state_[i]->address + " answered " + statusName(rep.status) +
                (ans.error.empty() ? "" : " (" + ans.error + ")");
  if (rep.status == Status::NotLeader) return onNotLeader(a, i, ans);
  if (mayHaveApplied(rep.status) && a.isWrite()) a.maybeApplied = true;
  // Timeout/Busy/transfer: the same node is still the best bet, unless it is going away.
  if (rep.status == Status::ShuttingDown && leaderGuess_ == i) ++leaderGuess_;
  return pause(a).then([]() { return Step{}; });
}

kj::Promise<ClusterChannel::Step> ClusterChannel::onNotLeader(Attempt& a, size_t i,
                                                              const Answer& ans) {
  if (leaderGuess_ == i) leaderGuess_ = i + 1;  // not the leader, whatever else
  NodeId hint = ans.reply.leaderHint;
  if (hint == kNoNode) {
    // No leader known (an election, or this node is cut off): ask again after a pause.
    a.redirectsInARow = 0;
    return pause(a).then([]() { return Step{}; });
  }
  KJ_IF_MAYBE(j, endpointOf(hint, ans.leaderAddr)) {
    return redirect(a, i, *j);
  }
  // A leader we cannot place yet (a node that does not know its address): ask every
  // endpoint who it is and where it serves clients.
  kj::Duration t = std::min<kj::Duration>(options_.attemptTimeoutMs * kj::MILLISECONDS,
                                          std::max<kj::Duration>(a.deadline - timer_.now(),
                                                                 1 * kj::MILLISECONDS));
  return refreshLeaderMap(t).then([this, &a, i, hint]() -> kj::Promise<Step> {
    KJ_IF_MAYBE(j, endpointOf(hint, "")) {
      return redirect(a, i, *j);
    }
    return Step::finished(
        notApplied(a, state_[i]->address + " is not the leader; the leader is node " +
                          std::to_string(hint) +
                          ", which is not among the endpoints, and no node " +
                          "knows its client address (add it to the endpoints)"));
  });
}

kj::Promise<ClusterChannel::Step> ClusterChannel::redirect(Attempt& a, size_t from, size_t to) {
  a.target = to;
  if (to != from && a.redirectsInARow++ < 2) {
    leaderGuess_ = to;
    return Step{};  // follow the hint at once
  }
  a.redirectsInARow = 0;
  return pause(a).then([]() { return Step{}; });
}

kj::Promise<ClusterChannel::Step> ClusterChannel::onCallFailed(Attempt& a, size_t i,
                                                               uint64_t generation,
                                                               kj::Exception&& e) {
  a.lastError = describeFailure(state_[i]->address, e);
  a.lastStatus = Status::Ok;
  // The node refused our TLS (a failed handshake: connect() fails before the request is
  // sent) or its absence: it served nothing on that connection, and the same endpoint
  // will answer the same way again. A TLS error on a connection that was up is a
  // disconnect like any other.
  bool misconfigured = isTlsRequiredRefusal(e) || (!a.sent && net::isTlsFailure(e));
  // Unanswered once sent: the node may have received it, and may apply it yet.
  if (a.sent && a.isWrite() && !misconfigured) a.maybeApplied = true;
  dropConnection(i, generation);
  state_[i]->misconfigured = misconfigured;
  if (misconfigured &&
      std::all_of(state_.begin(), state_.end(),
                  [](const kj::Own<Endpoint>& ep) { return ep->misconfigured; })) {
    return Step::finished(notApplied(a, a.lastError));
  }
  if (leaderGuess_ % state_.size() == i) leaderGuess_ = i + 1;
  a.redirectsInARow = 0;
  // Another endpoint may answer at once; pause only once we have tried them all.
  if (a.attempts % state_.size() != 0) return Step{};
  return pause(a).then([]() { return Step{}; });
}

Result ClusterChannel::giveUp(const Attempt& a) {
  Result r;
  r.outcome = Outcome::Error;
  r.status = a.lastStatus;
  r.attempts = a.attempts;
  r.clientId = a.command.clientId;
  r.requestId = a.command.requestId;
  r.maybeApplied = a.maybeApplied;
  std::string within = std::to_string(options_.timeoutMs) + " ms (" +
                       std::to_string(a.attempts) + " attempts); last: " + a.lastError;
  if (a.maybeApplied) {
    r.error = "outcome unknown (it may have been applied): no definite answer within " + within;
  } else if (a.lastStatus == Status::NotLeader || a.noLeaderSeen) {
    // Also when the deadline cut off an attempt after NotLeader answers (cluster_no_leader
    // saw "no node took the request" for a get to the one node up).
    r.error = std::string(a.isWrite() ? "not applied" : "not served") + ": no leader within " +
              within;
  } else {
    r.error = std::string(a.isWrite() ? "not applied" : "not served") +
              ": no node took the request within " + within;
  }
  return r;
}

Result ClusterChannel::notApplied(const Attempt& a, const std::string& why) {
  Result r = giveUp(a);
  if (!a.maybeApplied) {
    r.error = std::string(a.isWrite() ? "not applied" : "not served") + ": " + why;
  } else {
    r.error = "outcome unknown (an earlier attempt may have been applied); then " + why;
  }
  return r;
}

kj::Maybe<size_t> ClusterChannel::endpointOf(NodeId id, const std::string& address) {
  for (size_t j = 0; j < state_.size(); ++j) {
    if (state_[j]->id == id) return j;
  }
  if (address.empty() || address.size() > 255 || !hasHostAndPort(address) ||
      !hasNumericPort(address)) {
    return nullptr;
  }
  for (size_t j = 0; j < state_.size(); ++j) {
    if (state_[j]->address != address) continue;
    if (state_[j]->id == kNoNode) state_[j]->id = id;
    return j;
  }
  if (state_.size() >= endpoints_.size() + kMaxLearnedEndpoints) return nullptr;
  auto ep = kj::heap<Endpoint>();
  ep->address = address;
  ep->id = id;
  state_.push_back(kj::mv(ep));
  return state_.size() - 1;
}

kj::Promise<EndpointStatus> ClusterChannel::statusOf(size_t i, kj::Duration timeout) {
  auto generation = kj::heap<uint64_t>(0);
  uint64_t* gen = generation.get();
  auto call = connect(i).then([gen](Connection* c) {
    *gen = c->generation;
    return c->service.statusRequest().send().then(
        [](capnp::Response<schema::KvService::StatusResults> resp) {
          auto s = resp.getStatus();
          EndpointStatus st;
          st.reachable = true;
          st.id = s.getId();
          st.role = s.getRole().cStr();
          st.term = s.getTerm();
          st.leader = s.getLeader();
          st.commit = s.getCommit();
          st.applied = s.getApplied();
          st.lastIndex = s.getLastIndex();
          st.snapshotIndex = s.getSnapshotIndex();
          st.recovering = s.getRecovering();
          st.recoverUntil = s.getRecoverUntil();
          st.clientAddr = s.getClientAddr().cStr();
          st.leaderAddr = s.getLeaderAddr().cStr();
          return st;
        });
  });
  return timer_.timeoutAfter(timeout, kj::mv(call))
      .then(
          [this, i](EndpointStatus st) {
            st.endpoint = state_[i]->address;
            if (st.id != kNoNode) state_[i]->id = st.id;
            if (st.role == "leader") leaderGuess_ = i;
            if (st.leader != kNoNode) endpointOf(st.leader, st.leaderAddr);  // learn it
            return st;
          },
          [this, i, gen](kj::Exception&& e) {
            dropConnection(i, *gen);
            EndpointStatus st;
            st.endpoint = state_[i]->address;
            st.reachable = false;
            st.error = describeCause(e);
            return st;
          })
      .attach(kj::mv(generation));
}

kj::Promise<std::vector<EndpointStatus>> ClusterChannel::statusAll() {
  auto calls = kj::heapArrayBuilder<kj::Promise<EndpointStatus>>(endpoints_.size());
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    calls.add(statusOf(i, options_.attemptTimeoutMs * kj::MILLISECONDS));
  }
  return kj::joinPromises(calls.finish()).then([](kj::Array<EndpointStatus> all) {
    std::vector<EndpointStatus> out;
    for (auto& s : all) out.push_back(kj::mv(s));
    return out;
  });
}

kj::Promise<void> ClusterChannel::refreshLeaderMap(kj::Duration timeout) {
  auto calls = kj::heapArrayBuilder<kj::Promise<EndpointStatus>>(state_.size());
  for (size_t i = 0; i < state_.size(); ++i) calls.add(statusOf(i, timeout));
  return kj::joinPromises(calls.finish()).ignoreResult();
}

kj::Promise<Health> ClusterChannel::health() {
  return statusAll().then([](std::vector<EndpointStatus> all) {
    Health h;
    std::vector<std::string> problems;
    NodeId leader = kNoNode;
    Term leaderTerm = 0;
    for (auto& s : all) {
      if (!s.reachable) {
        problems.push_back(s.endpoint + " did not answer: " + s.error);
      } else if (s.role == "leader" && s.term >= leaderTerm) {
        leader = s.id;
        leaderTerm = s.term;
      }
    }
    if (leader == kNoNode) problems.push_back("no node reports itself leader");
    h.leader = leader;
    h.healthy = problems.empty();
    if (h.healthy) {
      h.message = "healthy: leader node " + std::to_string(leader) + ", term " +
                  std::to_string(leaderTerm) + ", " + std::to_string(all.size()) +
                  " endpoints answering";
    } else {
      for (size_t k = 0; k < problems.size(); ++k) {
        if (k > 0) h.message += "; ";
        h.message += problems[k];
      }
    }
    h.endpoints = std::move(all);
    return h;
  });
}

// ---- AsyncKvClient ----

AsyncKvClient::AsyncKvClient(ClusterChannel& channel)
    : AsyncKvClient(channel, channel.options()) {}

AsyncKvClient::AsyncKvClient(ClusterChannel& channel, const Options& options)
    : channel_(channel),
      options_(options),
      clientId_(options.clientId),
      nextRequestId_(options.firstRequestId == 0 ? 1 : options.firstRequestId),
      turns_(kj::refcounted<WriteTurns>()) {}

namespace {

// The local check: the same rules the server applies, answered without a round trip.
kj::Maybe<Result> checkLocally(const KvCommand& cmd) {
  KvCommand probe = cmd;
  if (probe.isWrite() && probe.op != OpType::OpenSession) {
    probe.clientId = 1;  // ids are assigned later; they do not make a command invalid
    probe.requestId = 1;
  }
  std::string why;
  Status s = validate(probe, &why);
  if (s == Status::Ok) return nullptr;
  Result r;
  r.outcome = Outcome::Error;
  r.status = s;
  r.error = std::string(statusName(s)) + ": " + why;
  return r;
}

Result asErrorResult(kj::Exception&& e) {
  Result r;
  r.outcome = Outcome::Error;
  r.error = "client failure: " + describe(e);
  return r;
}

}  // namespace

kj::Promise<Result> AsyncKvClient::ensureSession() {
  if (clientId_ != 0) {
    Result r;
    r.outcome = Outcome::Ok;
    r.clientId = clientId_;
    return r;
  }
  KvCommand open;
  open.op = OpType::OpenSession;
  return channel_.execute(kj::mv(open), false).then([this](Result r) {
    if (r.ok()) {
      KJ_REQUIRE(r.clientId != 0, "server opened a session with id 0");
      clientId_ = r.clientId;
      nextRequestId_ = 1;
    } else {
      // The write itself was never sent, whatever became of the session.
      const std::string prefix = "not applied: ";
      if (r.error.rfind(prefix, 0) == 0) r.error.erase(0, prefix.size());
      r.error = prefix + "cannot open a session: " + r.error;
      r.maybeApplied = false;
    }
    return r;
  });
}

kj::Promise<Result> AsyncKvClient::write(KvCommand command) {
  if (options_.checkLocally) {
    KJ_IF_MAYBE(bad, checkLocally(command)) {
      return kj::mv(*bad);
    }
  }
  if (!turns_->writing) {
    turns_->writing = true;
    return runWrite(kj::mv(command), Turn(kj::addRef(*turns_)));
  }
  if (turns_->waiting.size() >= kMaxWaitingWrites) {
    Result r;
    r.outcome = Outcome::Error;
    r.status = Status::Busy;
    r.error = "not applied: " + std::to_string(turns_->waiting.size()) +
              " writes of this session are already waiting for their turn";
    return r;
  }
  auto paf = kj::newPromiseAndFulfiller<Turn>();
  turns_->waiting.push_back(kj::mv(paf.fulfiller));
  return paf.promise
      .then([this, command = kj::mv(command)](Turn turn) mutable {
        return runWrite(kj::mv(command), kj::mv(turn));
      })
      .eagerlyEvaluate(nullptr);
}

AsyncKvClient::Turn::~Turn() noexcept(false) {
  if (turns_.get() != nullptr) {
    auto turns = kj::mv(turns_);
    turns->pass();
  }
}

void AsyncKvClient::WriteTurns::pass() {
  while (!waiting.empty()) {
    auto next = kj::mv(waiting.front());
    waiting.pop_front();
    if (next->isWaiting()) {
      next->fulfill(Turn(kj::addRef(*this)));
      return;
    }
  }
  writing = false;
}

kj::Promise<Result> AsyncKvClient::runWrite(KvCommand command, Turn turn) {
  kj::Promise<Result> result = nullptr;
  if (clientId_ != 0 && command.op != OpType::OpenSession) {
    // The common case: no session step.
    result = kj::evalNow([&]() { return send(kj::mv(command)); });
  } else {
    result = ensureSession().then(
        [this, command = kj::mv(command)](Result s) mutable -> kj::Promise<Result> {
          if (!s.ok()) return kj::mv(s);
          if (command.op == OpType::OpenSession) return kj::mv(s);
          return send(kj::mv(command));
        });
  }
  return result.catch_([](kj::Exception&& e) { return asErrorResult(kj::mv(e)); })
      .attach(kj::mv(turn))
      // kj runs a .then() only when its consumer asks for the value; a consumer joining
      // many promises asks late, and the next write of this session must not wait on it:
      // evaluated eagerly, the turn passes as soon as the answer is here.
      .eagerlyEvaluate(nullptr);
}

kj::Promise<Result> AsyncKvClient::send(KvCommand command) {
  command.clientId = clientId_;
  command.requestId = nextRequestId_++;
  return channel_.execute(kj::mv(command), false).then([this](Result r) {
    if (r.status == Status::SessionExpired && r.clientId == clientId_) {
      clientId_ = 0;  // the next write opens a fresh session
    }
    return r;
  });
}

kj::Promise<Result> AsyncKvClient::read(KvCommand command) {
  if (options_.checkLocally) {
    KJ_IF_MAYBE(bad, checkLocally(command)) {
      return kj::mv(*bad);
    }
  }
  return channel_.execute(kj::mv(command), options_.stale).catch_([](kj::Exception&& e) {
    return asErrorResult(kj::mv(e));
  });
}

kj::Promise<Result> AsyncKvClient::put(std::string key, std::string value) {
  KvCommand c;
  c.op = OpType::Put;
  c.key = std::move(key);
  c.value = std::move(value);
  return write(kj::mv(c));
}

kj::Promise<Result> AsyncKvClient::get(std::string key) {
  KvCommand c;
  c.op = OpType::Get;
  c.key = std::move(key);
  return read(kj::mv(c));
}

kj::Promise<Result> AsyncKvClient::del(std::string key) {
  KvCommand c;
  c.op = OpType::Delete;
  c.key = std::move(key);
  return write(kj::mv(c));
}

kj::Promise<Result> AsyncKvClient::cas(std::string key, std::string expected,
                                       std::string value) {
  KvCommand c;
  c.op = OpType::Cas;
  c.key = std::move(key);
  c.expected = std::move(expected);
  c.value = std::move(value);
  return write(kj::mv(c));
}

kj::Promise<Result> AsyncKvClient::casAbsent(std::string key, std::string value) {
  KvCommand c;
  c.op = OpType::Cas;
  c.key = std::move(key);
  c.expectAbsent = true;
  c.value = std::move(value);
  return write(kj::mv(c));
}

kj::Promise<Result> AsyncKvClient::range(std::string from, std::string to, uint32_t limit) {
  KvCommand c;
  c.op = OpType::Range;
  c.key = std::move(from);
  c.rangeEnd = std::move(to);
  c.limit = limit;
  return read(kj::mv(c));
}

kj::Promise<Result> AsyncKvClient::openSession() {
  KvCommand c;
  c.op = OpType::OpenSession;
  return write(kj::mv(c));
}

// ---- KvClient ----

struct KvClient::Loop {
  Loop(std::vector<std::string> endpoints, const Options& options)
      : io(kj::setupAsyncIo()),
        channel(*io.provider, io.provider->getTimer(), std::move(endpoints), options),
        client(channel) {}
  kj::AsyncIoContext io;
  ClusterChannel channel;
  AsyncKvClient client;
};

KvClient::KvClient(std::vector<std::string> endpoints, Options options)
    : loop_(kj::heap<Loop>(std::move(endpoints), options)) {}

KvClient::~KvClient() noexcept(false) {}

uint64_t KvClient::clientId() const { return loop_->client.clientId(); }
uint64_t KvClient::nextRequestId() const { return loop_->client.nextRequestId(); }

Result KvClient::put(std::string_view key, std::string_view value) {
  return loop_->client.put(std::string(key), std::string(value)).wait(loop_->io.waitScope);
}
Result KvClient::get(std::string_view key) {
  return loop_->client.get(std::string(key)).wait(loop_->io.waitScope);
}
Result KvClient::del(std::string_view key) {
  return loop_->client.del(std::string(key)).wait(loop_->io.waitScope);
}
Result KvClient::cas(std::string_view key, std::string_view expected, std::string_view value) {
  return loop_->client.cas(std::string(key), std::string(expected), std::string(value))
      .wait(loop_->io.waitScope);
}
Result KvClient::casAbsent(std::string_view key, std::string_view value) {
  return loop_->client.casAbsent(std::string(key), std::string(value))
      .wait(loop_->io.waitScope);
}
Result KvClient::range(std::string_view from, std::string_view to, uint32_t limit) {
  return loop_->client.range(std::string(from), std::string(to), limit)
      .wait(loop_->io.waitScope);
}
Result KvClient::admin(const AdminRequest& request) {
  return loop_->channel.admin(request).wait(loop_->io.waitScope);
}
Result KvClient::openSession() { return loop_->client.openSession().wait(loop_->io.waitScope); }
std::vector<EndpointStatus> KvClient::status() {
  return loop_->channel.statusAll().wait(loop_->io.waitScope);
}
Health KvClient::health() { return loop_->channel.health().wait(loop_->io.waitScope); }

}  // namespace kvr::client
