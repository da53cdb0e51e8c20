#include "net/peer_transport.h"

#include <algorithm>
#include <deque>
#include <set>

#include <capnp/message.h>
#include <kj/debug.h>

#include "net/metrics.h"
#include "net/peer_stream.h"
#include "schemas/codec.h"
#include "schemas/raft.capnp.h"

namespace kvr::net {
namespace {

// What a queued message costs in the byte bound: its payloads plus fixed overhead.
size_t approxBytes(const Message& msg) {
  size_t bytes = 128 + msg.snapChunk.size();
  for (const Entry& e : msg.entries) bytes += 48 + e.data.size();
  return bytes;
}

// One live connection to a peer. Members are destroyed bottom-up: writes first, the
// stream last.
struct Connection final : public kj::TaskSet::ErrorHandler {
  explicit Connection(kj::Own<kj::AsyncIoStream> s)
      : stream(kj::mv(s)),
        reader(*stream),
        failure(kj::newPromiseAndFulfiller<void>()),
        writes(*this) {}

  // A write failed or timed out: the connection is no good.
  void taskFailed(kj::Exception&& exception) override {
    if (failure.fulfiller->isWaiting()) failure.fulfiller->reject(kj::mv(exception));
  }

  kj::Own<kj::AsyncIoStream> stream;
  PeerFrameReader reader;
  kj::PromiseFulfillerPair<void> failure;
  bool ready = false;          // hello accepted
  bool writing = false;        // one frame at a time
  size_t writingMessages = 0;  // in the frame being written
  bool pumpScheduled = false;
  bool pingDue = false;
  uint64_t pingSentNs = 0;  // the unanswered ping's send time; 0: none out
  FrameScratch scratch;     // outlives the writes: their builders zero it as they go
  kj::TaskSet writes;
};

}  // namespace

class PeerTransport::Peer {
 public:
  Peer(PeerTransport& transport, NodeId id, std::string address)
      : t_(transport),
        id_(id),
        address_(std::move(address)),
        backoff_(t_.options_.minBackoff) {}
  ~Peer() noexcept {
    running_ = nullptr;  // holds promises derived from the connection: drop them first
    conn_ = nullptr;
  }

  void enqueue(Message&& msg) {
    size_t bytes = approxBytes(msg);
    queue_.emplace_back(std::move(msg), bytes);
    queuedBytes_ += bytes;
    while (queue_.size() > 1 && (queue_.size() > t_.options_.maxQueuedMessages ||
                                 queuedBytes_ > t_.options_.maxQueuedBytes)) {
      queuedBytes_ -= queue_.front().second;
      queue_.pop_front();
      ++stats_.droppedQueueFull;
    }
    schedulePump();
  }

  void start() { running_ = run().eagerlyEvaluate(nullptr); }

  void stop() {
    running_ = nullptr;
    conn_ = nullptr;
    dropQueue();
    up_ = false;
  }

  bool up() const { return up_; }
  const PeerStats& stats() const { return stats_; }
  const std::string& address() const { return address_; }

 private:
  kj::Promise<void> run() {
    return connectAndServe().then([this]() { return retryLater(kj::str("connection closed")); },
                                  [this](kj::Exception&& e) {
                                    if (!isTlsFailure(e)) {
                                      return retryLater(kj::str(e.getDescription()));
                                    }
                                    // A CA or certificate mismatch fails every retry the
                                    // same way: say it once, while the peer is not up.
                                    std::string why = t_.tls_ != nullptr
                                                          ? t_.tls_->explain(e)
                                                          : describeTlsFailure(e);
                                    if (why.rfind("TLS ", 0) != 0) why = "TLS: " + why;
                                    logOnce(why, "peer " + std::to_string(id_) + ": " + why);
                                    return retryLater(kj::str(why));
                                  });
  }

  // Logs `line` the first time `reason` is seen (a bounded number of reasons).
  void logOnce(const std::string& reason, const std::string& line) {
    constexpr size_t kMaxReasonsLogged = 16;
    if (reasonsLogged_.size() < kMaxReasonsLogged && reasonsLogged_.insert(reason).second) {
      t_.log_(line);
    }
  }

  kj::Promise<void> connectAndServe() {
    auto connecting = t_.network_.parseAddress(address_)
                          .then([](kj::Own<kj::NetworkAddress> addr) {
                            return addr->connect().attach(kj::mv(addr));
                          })
                          .then([this](kj::Own<kj::AsyncIoStream> stream)
                                    -> kj::Promise<kj::Own<kj::AsyncIoStream>> {
                            if (t_.tls_ == nullptr) return kj::mv(stream);
                            return t_.tls_->connect(kj::mv(stream), address_,
                                                    t_.tlsServerName_);
                          });
    return t_.timer_.timeoutAfter(t_.options_.connectTimeout, kj::mv(connecting))
        .then([this](kj::Own<kj::AsyncIoStream> stream) {
          conn_ = kj::heap<Connection>(kj::mv(stream));
          Connection& c = *KJ_ASSERT_NONNULL(conn_);
          auto message = kj::heap<capnp::MallocMessageBuilder>();
          auto frame = message->initRoot<schema::PeerFrame>();
          frame.setMagic(kPeerFrameMagic);
          auto hello = frame.initHello();
          hello.setClusterId(t_.clusterId_);
          hello.setFrom(t_.self_);
          hello.setIncarnation(t_.incarnation_);
          if (t_.addresses_ != nullptr) hello.setClientAddr(t_.addresses_->self());
          auto answer =
              writePeerFrame(*c.stream, *message).attach(kj::mv(message)).then([this, &c]() {
                return nextFrame(c);
              });
          return t_.timer_.timeoutAfter(t_.options_.callTimeout, kj::mv(answer));
        })
        .then([this](kj::Own<capnp::MessageReader> frame) -> kj::Promise<void> {
          auto root = frame->getRoot<schema::PeerFrame>();
          if (root.getMagic() != kPeerFrameMagic || !root.isHelloAnswer()) {
            // E.g. the listener's Abort: too many strangers, or TLS required.
            std::string reason = describeForeignFrame(*frame);
            logOnce(reason,
                    "peer " + std::to_string(id_) + " refused our connection: " + reason);
            return KJ_EXCEPTION(FAILED, "peer refused the connection", reason);
          }
          auto answer = root.getHelloAnswer();
          if (!answer.getOk()) {
            std::string reason = answer.getReason();
            logOnce(reason,
                    "peer " + std::to_string(id_) + " refused our connection: " + reason);
            if (answer.getStaleIncarnation() && t_.stale_) t_.stale_(reason);
            return KJ_EXCEPTION(FAILED, "peer refused hello", reason);
          }
          KJ_IF_MAYBE(refusal, checkIncarnation(answer.getIncarnation())) {
            logOnce(*refusal, "refusing peer " + std::to_string(id_) + ": " + *refusal);
            return KJ_EXCEPTION(FAILED, "peer's data dir incarnation changed", *refusal);
          }
          learnClientAddr(answer.getClientAddr());
          frame = nullptr;  // it points into the reader's buffer
          Connection& c = *KJ_ASSERT_NONNULL(conn_);
          c.ready = true;
          ++stats_.connects;
          backoff_ = t_.options_.minBackoff;
          if (!up_) {
            up_ = true;
            t_.log_("peer " + std::to_string(id_) + " up");
          }
          pump();
          return readPongs(c)
              .exclusiveJoin(kj::mv(c.failure.promise))
              .exclusiveJoin(pingLoop(c));
        });
  }

  // Why the peer's answer may not be trusted: it presents another data dir incarnation
  // than the one recorded for it (its data dir was wiped or replaced). Records a new one.
  kj::Maybe<std::string> checkIncarnation(uint64_t incarnation) {
    if (t_.knownIncarnations_ == nullptr) return nullptr;
    uint64_t known = 0;
    auto seen = t_.knownIncarnations_->check(id_, incarnation, &known);
    if (seen == disk::PeerIncarnations::Seen::First) {
      t_.log_("peer " + std::to_string(id_) + ": data dir incarnation " +
              std::to_string(incarnation) + " recorded");
    }
    if (seen != disk::PeerIncarnations::Seen::Different) return nullptr;
    return "it presents data dir incarnation " + std::to_string(incarnation) +
           ", but it was incarnation " + std::to_string(known) +
           ": its data dir was wiped or replaced (it forgot votes and entries it "
           "acknowledged)";
  }

  // The next whole frame the peer sends.
  kj::Promise<kj::Own<capnp::MessageReader>> nextFrame(Connection& c) {
    KJ_IF_MAYBE(frame, c.reader.take()) {
      return kj::mv(*frame);
    }
    return c.reader.fill().then([this, &c](bool more) {
      KJ_REQUIRE(more, "the peer closed the connection before answering our hello");
      return nextFrame(c);
    });
  }

  // After the hello a peer sends only pongs; resolves when it closes the connection.
  kj::Promise<void> readPongs(Connection& c) {
    return c.reader.fill().then([this, &c](bool more) -> kj::Promise<void> {
      if (!more) return kj::READY_NOW;
      for (;;) {
        kj::Own<capnp::MessageReader> frame;
        KJ_IF_MAYBE(f, c.reader.take()) {
          frame = kj::mv(*f);
        } else {
          break;
        }
        auto root = frame->getRoot<schema::PeerFrame>();
        KJ_REQUIRE(root.getMagic() == kPeerFrameMagic && root.isPong(),
                   "the peer sent a frame other than a pong");
        if (root.getPong() == c.pingSentNs && c.pingSentNs != 0) {
          if (t_.roundTrip_) t_.roundTrip_(id_, metrics::monotonicNanos() - c.pingSentNs);
          c.pingSentNs = 0;
        }
      }
      return readPongs(c);
    });
  }

  // Every pingInterval: a ping, unless one is out; one out for callTimeout fails the
  // connection (a peer that is up but wedged is found out even when we send it nothing).
  kj::Promise<void> pingLoop(Connection& c) {
    return t_.timer_.afterDelay(t_.options_.pingInterval)
        .then([this, &c]() -> kj::Promise<void> {
          if (c.pingSentNs != 0) {
            uint64_t waitedNs = metrics::monotonicNanos() - c.pingSentNs;
            if (waitedNs >= uint64_t(t_.options_.callTimeout / kj::NANOSECONDS)) {
              return KJ_EXCEPTION(DISCONNECTED, "the peer did not answer a ping in time",
                                  waitedNs / 1000000);
            }
          } else {
            c.pingDue = true;
            schedulePump();
          }
          return pingLoop(c);
        });
  }

  void learnClientAddr(capnp::Text::Reader text) {
    std::string address(text.cStr(), text.size());
    if (t_.addresses_ != nullptr && t_.addresses_->learn(id_, address)) {
      t_.log_("peer " + std::to_string(id_) + " serves clients at " + address);
    }
  }

  // Runs in a continuation of a promise that may hang off the connection, so the
  // connection is torn down one turn later, once that chain has let go of it.
  kj::Promise<void> retryLater(kj::String why) {
    return kj::evalLater([this, why = kj::mv(why)]() {
      ++stats_.failures;
      KJ_IF_MAYBE(c, conn_) {
        stats_.droppedOnFailure += (*c)->writingMessages;
      }
      conn_ = nullptr;
      dropQueue();
      if (up_) {
        up_ = false;
        t_.log_("peer " + std::to_string(id_) + " down: " + why.cStr());
      }
      kj::Duration delay = backoff_;
      backoff_ = std::min(backoff_ * 2, t_.options_.maxBackoff);
      return t_.timer_.afterDelay(delay).then([this]() { return run(); });
    });
  }

  void dropQueue() {
    stats_.droppedOnFailure += queue_.size();
    queue_.clear();
    queuedBytes_ = 0;
  }

  // Deferred to the end of the turn so that all messages one input produced share a frame.
  void schedulePump() {
    KJ_IF_MAYBE(c, conn_) {
      Connection& conn = **c;
      if (!conn.ready || conn.pumpScheduled) return;
      conn.pumpScheduled = true;
      conn.writes.add(kj::evalLater([this, &conn]() {
        conn.pumpScheduled = false;
        pump();
      }));
    }
  }

  // Writes one frame: a due ping, else every queued message up to the batch bounds. What
  // queues while it is written goes in the next frame.
  void pump() {
    KJ_IF_MAYBE(c, conn_) {
      Connection& conn = **c;
      if (!conn.ready || conn.writing) return;
      kj::Own<capnp::MessageBuilder> message;
      size_t count = 0;
      if (conn.pingDue) {
        conn.pingDue = false;
        conn.pingSentNs = std::max<uint64_t>(1, metrics::monotonicNanos());
        message = conn.scratch.builder(16);
        auto frame = message->initRoot<schema::PeerFrame>();
        frame.setMagic(kPeerFrameMagic);
        frame.setPing(conn.pingSentNs);
      } else if (!queue_.empty()) {
        size_t bytes = 0;
        while (count < queue_.size() && count < t_.options_.maxBatchMessages &&
               (count == 0 || bytes + queue_[count].second <= t_.options_.maxBatchBytes)) {
          bytes += queue_[count].second;
          ++count;
        }
        // One first segment that fits the batch (the connection's reused scratch, up to
        // its bound): a single-segment frame.
        message = conn.scratch.builder(
            std::min<size_t>(bytes / sizeof(capnp::word) + 64,
                             kMaxPeerFrameBytes / sizeof(capnp::word)));
        auto frame = message->initRoot<schema::PeerFrame>();
        frame.setMagic(kPeerFrameMagic);
        auto batch = frame.initBatch(static_cast<uint>(count));
        for (size_t i = 0; i < count; ++i) {
          codec::toCapnp(t_.clusterId_, queue_.front().first, batch[static_cast<uint>(i)]);
          queuedBytes_ -= queue_.front().second;
          queue_.pop_front();
        }
      } else {
        return;
      }
      // The batch bounds keep a frame under what a receiver reads (constructor check).
      KJ_ASSERT(message->sizeInWords() * sizeof(capnp::word) <= kMaxPeerFrameBytes,
                "a peer frame over the receivers' bound", message->sizeInWords(), count);
      conn.writing = true;
      conn.writingMessages = count;
      auto written = writePeerFrame(*conn.stream, *message).attach(kj::mv(message));
      conn.writes.add(t_.timer_.timeoutAfter(t_.options_.callTimeout, kj::mv(written))
                          .then([this, &conn, count]() {
                            conn.writing = false;
                            conn.writingMessages = 0;
                            stats_.sentMessages += count;
                            pump();
                          }));
    }
  }

  PeerTransport& t_;
  NodeId id_;
  std::string address_;
  std::deque<std::pair<Message, size_t>> queue_;  // (message, approxBytes)
  size_t queuedBytes_ = 0;
  bool up_ = false;
  kj::Duration backoff_;
  PeerStats stats_;
  std::set<std::string> reasonsLogged_;  // refusals and TLS failures logged once
  kj::Maybe<kj::Own<Connection>> conn_;
  kj::Promise<void> running_ = nullptr;  // connect / serve / back off, forever
};

PeerTransport::PeerTransport(kj::Network& network, kj::Timer& timer, uint64_t clusterId,
                             NodeId self, const std::map<NodeId, std::string>& peers, LogFn log,
                             PeerTransportOptions options)
    : network_(network),
      timer_(timer),
      clusterId_(clusterId),
      self_(self),
      log_(std::move(log)),
      options_(options) {
  KJ_REQUIRE(options_.maxQueuedMessages >= 1 && options_.maxBatchMessages >= 1 &&
             options_.maxBatchBytes + 1024 * options_.maxBatchMessages <= kMaxPeerFrameBytes &&
             options_.pingInterval > 0 * kj::SECONDS);
  for (const auto& [id, address] : peers) {
    KJ_REQUIRE(id != self, "a node is not its own peer", id);
    peers_.emplace(id, kj::heap<Peer>(*this, id, address));
  }
}

PeerTransport::~PeerTransport() noexcept { peers_.clear(); }

std::vector<std::string> PeerTransport::setPeers(const std::map<NodeId, std::string>& peers) {
  std::vector<std::string> changes;
  for (auto it = peers_.begin(); it != peers_.end();) {
    auto want = peers.find(it->first);
    if (want != peers.end() && want->second == it->second->address()) {
      ++it;
      continue;
    }
    changes.push_back("no longer dialling node " + std::to_string(it->first) + " at " +
                      it->second->address() +
                      (want == peers.end() ? " (not a member)" : " (its address changed)"));
    it->second->stop();
    it = peers_.erase(it);
  }
  for (const auto& [id, address] : peers) {
    KJ_REQUIRE(id != self_, "a node is not its own peer", id);
    if (peers_.count(id) > 0) continue;
    auto [it, added] = peers_.emplace(id, kj::heap<Peer>(*this, id, address));
    changes.push_back("dialling node " + std::to_string(id) + " at " + address);
    if (started_ && !stopped_) it->second->start();
  }
  return changes;
}

void PeerTransport::start() {
  if (started_ || stopped_) return;
  started_ = true;
  for (auto& [id, peer] : peers_) peer->start();
}

void PeerTransport::send(Message&& msg) {
  auto it = peers_.find(msg.to);
  if (stopped_ || it == peers_.end()) {
    ++droppedUnknown_;
    return;
  }
  it->second->enqueue(std::move(msg));
}

void PeerTransport::stop() {
  stopped_ = true;
  for (auto& [id, peer] : peers_) peer->stop();
}

bool PeerTransport::isUp(NodeId peer) const {
  auto it = peers_.find(peer);
  return it != peers_.end() && it->second->up();
}

PeerTransport::PeerStats PeerTransport::stats(NodeId peer) const {
  auto it = peers_.find(peer);
  KJ_REQUIRE(it != peers_.end(), "unknown peer", peer);
  return it->second->stats();
}

}  // namespace kvr::net
