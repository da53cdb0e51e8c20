#include "net/kv_client.h"

#include <algorithm>

#include <capnp/rpc-twoparty.h>
#include <kj/debug.h>

#include "net/rpc_listener.h"  // kRefusedConnectionPrefix only
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

std::vector<std::string> parseEndpointList(std::string_view list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string_view::npos) comma = list.size();
    std::string item(list.substr(start, comma - start));
    size_t colon = item.rfind(':');
    KJ_REQUIRE(!item.empty(), "empty endpoint in list", std::string(list));
    KJ_REQUIRE(colon != std::string::npos && colon > 0 && colon + 1 < item.size(),
               "endpoint must look like HOST:PORT", item);
    for (size_t i = colon + 1; i < item.size(); ++i) {
      KJ_REQUIRE(item[i] >= '0' && item[i] <= '9', "endpoint port must be a number", item);
    }
    out.push_back(std::move(item));
    start = comma + 1;
  }
  KJ_REQUIRE(!out.empty(), "no endpoints given");
  KJ_REQUIRE(out.size() <= 64, "too many endpoints", out.size());
  return out;
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

// What went wrong talking to `address`, for Result::error. A node that refuses a
// connection (too many) sends an Abort whose reason starts with kRefusedConnectionPrefix:
// "node HOST:PORT refused the connection: too many client connections (...)".
std::string describeFailure(const std::string& address, const kj::Exception& e) {
  std::string text = describe(e);
  if (text.rfind(net::kRefusedConnectionPrefix, 0) == 0) return "node " + address + " " + text;
  return address + ": " + text;
}

bool isTransient(Status s) {
  return s == Status::NotLeader || s == Status::Timeout || s == Status::Busy ||
         s == Status::TransferInProgress || s == Status::ShuttingDown;
}

// The server's answer, decoded.
struct Answer {
  KvReply reply;
  std::string error;
};

// One attempt's verdict: a definite result, or try again. (Not a kj::Maybe<Result>: GCC
// 12 at -O2 reports a false maybe-uninitialized on that inside kj's promise nodes.)
struct Step {
  bool done = false;
  Result result;
  static Step finished(Result r) {
    Step s;
    s.done = true;
    s.result = std::move(r);
    return s;
  }
};

class IgnoreErrors final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&&) override {}
};

}  // namespace

struct ClusterChannel::Connection {
  Connection(kj::Own<kj::AsyncIoStream> s, uint64_t gen)
      : stream(kj::mv(s)),
        rpc(kj::heap<capnp::TwoPartyClient>(*stream)),
        service(rpc->bootstrap().castAs<schema::KvService>()),
        generation(gen) {}
  // Declaration order matters: destroyed service, then rpc, then the stream under it.
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyClient> rpc;
  schema::KvService::Client service;
  uint64_t generation;
};

struct ClusterChannel::Endpoint {
  std::string address;
  NodeId id = kNoNode;  // learned from status(); kNoNode until then
  kj::Maybe<kj::Own<Connection>> connection;
  kj::Maybe<kj::ForkedPromise<void>> connecting;
  uint64_t generation = 0;  // bumped per connection, so a stale failure drops nothing
};

struct ClusterChannel::Attempt : public kj::Refcounted {
  KvCommand command;
  bool stale = false;
  kj::TimePoint deadline = kj::origin<kj::TimePoint>();
  uint32_t attempts = 0;
  uint32_t backoffMs = 0;
  uint32_t redirectsInARow = 0;
  kj::Maybe<size_t> target;  // where the last NotLeader reply pointed
  std::string lastError;
  Status lastStatus = Status::Ok;
};

ClusterChannel::ClusterChannel(kj::AsyncIoProvider& provider, kj::Timer& timer,
                               std::vector<std::string> endpoints, Options options)
    : provider_(provider),
      timer_(timer),
      endpoints_(std::move(endpoints)),
      options_(options),
      errorHandler_(kj::heap<IgnoreErrors>()) {
  KJ_REQUIRE(!endpoints_.empty(), "a client needs at least one endpoint");
  KJ_REQUIRE(options_.timeoutMs > 0 && options_.attemptTimeoutMs > 0, "timeouts must be > 0");
  auto builder = kj::heapArrayBuilder<kj::Own<Endpoint>>(endpoints_.size());
  for (auto& e : endpoints_) {
    auto ep = kj::heap<Endpoint>();
    ep->address = e;
    builder.add(kj::mv(ep));
  }
  state_ = builder.finish();
  background_ = kj::heap<kj::TaskSet>(*errorHandler_);
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
            .then(
                [this, i](kj::Own<kj::AsyncIoStream> stream) {
                  Endpoint& e = *state_[i];
                  e.connection = kj::heap<Connection>(kj::mv(stream), ++e.generation);
                  forgetConnecting(i);
                },
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
  kj::Duration delay = a.backoffMs * kj::MILLISECONDS;
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

kj::Promise<Result> ClusterChannel::attemptLoop(kj::Own<Attempt> attempt) {
  Attempt& a = *attempt;
  kj::Duration left = a.deadline - timer_.now();
  if (a.attempts > 0 && (left <= 0 * kj::NANOSECONDS || a.attempts > options_.maxRetries)) {
    Result r;
    r.outcome = Outcome::Error;
    r.status = a.lastStatus;
    r.attempts = a.attempts;
    r.clientId = a.command.clientId;
    r.requestId = a.command.requestId;
    r.error = "no definite answer after " + std::to_string(a.attempts) + " attempts in " +
              std::to_string(options_.timeoutMs) + " ms (outcome unknown); last: " +
              a.lastError;
    return r;
  }
  size_t i = pickEndpoint(a);
  a.target = nullptr;
  ++a.attempts;
  kj::Duration budget = options_.attemptTimeoutMs * kj::MILLISECONDS;
  if (a.attempts > 1 && left < budget) budget = left;
  if (budget < 1 * kj::MILLISECONDS) budget = 1 * kj::MILLISECONDS;

  auto generation = kj::heap<uint64_t>(0);
  uint64_t* gen = generation.get();
  auto call = connect(i).then([&a, gen](Connection* c) {
    *gen = c->generation;
    auto req = c->service.callRequest();
    codec::toCapnp(a.command, req.initCommand());
    req.setStale(a.stale);
    return req.send().then([](capnp::Response<schema::KvService::CallResults> resp) {
      Answer ans;
      std::string why;
      auto reply = resp.getReply();
      KJ_REQUIRE(codec::fromCapnp(reply, &ans.reply, &why), "malformed reply", why);
      ans.error = reply.getError().cStr();
      return ans;
    });
  });

  // Each branch says whether we are done (a Result) or should try again (nullptr).
  return timer_.timeoutAfter(budget, kj::mv(call))
      .then(
          [this, &a, i](Answer ans) -> kj::Promise<Step> {
            const KvReply& rep = ans.reply;
            a.lastStatus = rep.status;
            Result r;
            r.attempts = a.attempts;
            r.status = rep.status;
            r.index = rep.index;
            r.clientId = a.command.clientId;
            r.requestId = a.command.requestId;
            if (!a.stale) leaderGuess_ = i;
            switch (rep.status) {
              case Status::Ok:
                r.outcome = Outcome::Ok;
                r.value = rep.value;
                r.kvs = rep.kvs;
                r.more = rep.more;
                if (a.command.op == OpType::OpenSession) r.clientId = rep.clientId;
                return Step::finished(kj::mv(r));
              case Status::NotFound:
                r.outcome = Outcome::NotFound;
                return Step::finished(kj::mv(r));
              case Status::CasMismatch:
                r.outcome = Outcome::CasMismatch;
                r.value = rep.value;
                return Step::finished(kj::mv(r));
              default:
                break;
            }
            if (!isTransient(rep.status)) {
              r.outcome = Outcome::Error;
              r.error = std::string(statusName(rep.status)) + ": " +
                        (ans.error.empty() ? std::string("(no detail)") : ans.error);
              return Step::finished(kj::mv(r));
            }
            a.lastError = state_[i]->address + " answered " + statusName(rep.status) +
                          (ans.error.empty() ? "" : " (" + ans.error + ")");
            if (rep.status != Status::NotLeader) {
              // Timeout/Busy/transfer: the same node is still the best bet, unless it
              // is going away.
              if (rep.status == Status::ShuttingDown && leaderGuess_ == i) ++leaderGuess_;
              return pause(a).then([]() { return Step{}; });
            }
            if (leaderGuess_ == i) leaderGuess_ = i + 1;  // not the leader, whatever else
            NodeId hint = rep.leaderHint;
            auto findHint = [this, hint]() -> kj::Maybe<size_t> {
              if (hint == kNoNode) return nullptr;
              for (size_t j = 0; j < state_.size(); ++j) {
                if (state_[j]->id == hint) return j;
              }
              return nullptr;
            };
            auto redirect = [this, &a, hint, i](kj::Maybe<size_t> to)
                -> kj::Promise<Step> {
              KJ_IF_MAYBE(j, to) {
                if (*j != i && a.redirectsInARow++ < 2) {
                  a.target = *j;
                  leaderGuess_ = *j;
                  return Step{};  // follow the hint at once
                }
                a.target = *j;
              } else if (hint != kNoNode) {
                a.lastError += "; its leader, node " + std::to_string(hint) +
                               ", is not among the endpoints";
              }
              a.redirectsInARow = 0;
              return pause(a).then([]() { return Step{}; });
            };
            auto known = findHint();
            if (known != nullptr || hint == kNoNode) return redirect(known);
            // A leader we cannot place yet: ask every endpoint who it is.
            kj::Duration t = std::min<kj::Duration>(options_.attemptTimeoutMs * kj::MILLISECONDS,
                                                    std::max<kj::Duration>(a.deadline - timer_.now(),
                                                             1 * kj::MILLISECONDS));
            return refreshLeaderMap(t).then(
                [findHint, redirect]() mutable { return redirect(findHint()); });
          },
          [this, &a, i, gen](kj::Exception&& e) -> kj::Promise<Step> {
            a.lastError = describeFailure(state_[i]->address, e);
            a.lastStatus = Status::Ok;
            dropConnection(i, *gen);
            if (leaderGuess_ % state_.size() == i) leaderGuess_ = i + 1;
            a.redirectsInARow = 0;
            // Another endpoint may answer at once; pause only once we have tried them all.
            if (a.attempts % state_.size() != 0) return Step{};
            return pause(a).then([]() { return Step{}; });
          })
      .attach(kj::mv(generation))
      .then([this, attempt = kj::mv(attempt)](Step step) mutable -> kj::Promise<Result> {
        if (step.done) return kj::mv(step.result);
        return attemptLoop(kj::mv(attempt));
      });
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
          return st;
        });
  });
  return timer_.timeoutAfter(timeout, kj::mv(call))
      .then(
          [this, i](EndpointStatus st) {
            st.endpoint = state_[i]->address;
            if (st.id != kNoNode) state_[i]->id = st.id;
            if (st.role == "leader") leaderGuess_ = i;
            return st;
          },
          [this, i, gen](kj::Exception&& e) {
            dropConnection(i, *gen);
            EndpointStatus st;
            st.endpoint = state_[i]->address;
            st.reachable = false;
            st.error = describe(e);
            return st;
          })
      .attach(kj::mv(generation));
}

kj::Promise<std::vector<EndpointStatus>> ClusterChannel::statusAll() {
  auto calls = kj::heapArrayBuilder<kj::Promise<EndpointStatus>>(state_.size());
  for (size_t i = 0; i < state_.size(); ++i) {
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
      writeQueue_(kj::Promise<void>(kj::READY_NOW).fork()) {}

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
      r.error = "cannot open a session: " + r.error;
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
  auto done = kj::newPromiseAndFulfiller<void>();
  auto turn = writeQueue_.addBranch().catch_([](kj::Exception&&) {});
  writeQueue_ = done.promise.fork();
  return turn
      .then([this, command = kj::mv(command)]() mutable {
        return ensureSession().then([this, command = kj::mv(command)](Result s) mutable
                                    -> kj::Promise<Result> {
          if (!s.ok()) return kj::mv(s);
          if (command.op == OpType::OpenSession) return kj::mv(s);
          command.clientId = clientId_;
          command.requestId = nextRequestId_++;
          return channel_.execute(kj::mv(command), false).then([this](Result r) {
            if (r.status == Status::SessionExpired && r.clientId == clientId_) {
              clientId_ = 0;  // the next write opens a fresh session
            }
            return r;
          });
        });
      })
      .catch_([](kj::Exception&& e) { return asErrorResult(kj::mv(e)); })
      .then([f = kj::mv(done.fulfiller)](Result r) mutable {
        f->fulfill();
        return r;
      })
      // kj runs a .then() only when its consumer asks for the value; a consumer joining
      // many promises asks late, and the next write of this session must not wait on it.
      .eagerlyEvaluate(nullptr);
}

kj::Promise<Result> AsyncKvClient::read(KvCommand command) {
  if (options_.checkLocally) {
    KJ_IF_MAYBE(bad, checkLocally(command)) {
      return kj::mv(*bad);
    }
  }
  return channel_.execute(kj::mv(command), options_.stale).catch_([](kj::Exception&& e) { return asErrorResult(kj::mv(e)); });
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
Result KvClient::openSession() {
  return loop_->client.openSession().wait(loop_->io.waitScope);
}
std::vector<EndpointStatus> KvClient::status() {
  return loop_->channel.statusAll().wait(loop_->io.waitScope);
}
Health KvClient::health() { return loop_->channel.health().wait(loop_->io.waitScope); }

}  // namespace kvr::client
