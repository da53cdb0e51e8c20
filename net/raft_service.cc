#include "net/raft_service.h"

#include <algorithm>

#include <kj/debug.h>

#include "net/peer_stream.h"
#include "schemas/codec.h"
#include "schemas/raft.capnp.h"

namespace kvr::net {

// One accepted peer connection: reads its hello and answers it, then hands every batch
// to the replica (and the node's afterBatch once per read, however many batches it
// brought) and answers pings. Its only writes are the answer and pongs.
class RaftService::Inbound final : private kj::TaskSet::ErrorHandler {
 public:
  Inbound(RaftService& service, kj::Own<ConnectionHandle> connection, kj::AsyncIoStream& stream)
      : service_(service),
        connection_(kj::mv(connection)),
        stream_(stream),
        reader_(stream),
        failed_(kj::newPromiseAndFulfiller<void>()),
        writes_(*this) {}

  kj::Promise<void> run() { return readLoop().exclusiveJoin(kj::mv(failed_.promise)); }

 private:
  kj::Promise<void> readLoop() {
    return reader_.fill().then([this](bool more) -> kj::Promise<void> {
      if (!more) return kj::READY_NOW;  // the dialer closed the connection
      bool delivered = false;
      kj::Maybe<kj::Promise<void>> last;  // a refusal's answer: written, then the end
      for (;;) {
        kj::Own<capnp::MessageReader> frame;
        KJ_IF_MAYBE(f, reader_.take()) {
          frame = kj::mv(*f);
        } else {
          break;
        }
        auto root = frame->getRoot<schema::PeerFrame>();
        KJ_REQUIRE(root.getMagic() == kPeerFrameMagic,
                   "not a peer frame (a node of an older version, or not a node at all)");
        switch (root.which()) {
          case schema::PeerFrame::HELLO: last = hello(root.getHello()); break;
          case schema::PeerFrame::BATCH:
            KJ_REQUIRE(accepted_, "a batch before an accepted hello");
            service_.deliver(root.getBatch());
            delivered = true;
            break;
          case schema::PeerFrame::PING:
            KJ_REQUIRE(accepted_, "a ping before an accepted hello");
            pong(root.getPing());
            break;
          default: KJ_FAIL_REQUIRE("a frame a dialer does not send", uint(root.which()));
        }
        if (last != nullptr) break;
      }
      if (delivered) service_.afterBatch_();
      KJ_IF_MAYBE(answer, last) {
        return kj::mv(*answer);
      }
      return readLoop();
    });
  }

  // Answers the hello. Returns the answer's write if it refuses (the connection then
  // ends), else nothing.
  kj::Maybe<kj::Promise<void>> hello(schema::PeerHello::Reader hello) {
    KJ_REQUIRE(!helloSeen_, "a second hello on one connection");
    helloSeen_ = true;
    bool stale = false;
    std::string refusal = service_.checkHello(hello.getClusterId(), hello.getFrom(),
                                              hello.getIncarnation(), &stale);
    auto message = kj::heap<capnp::MallocMessageBuilder>();
    auto frame = message->initRoot<schema::PeerFrame>();
    frame.setMagic(kPeerFrameMagic);
    auto answer = frame.initHelloAnswer();
    answer.setOk(refusal.empty());
    answer.setReason(refusal);
    answer.setIncarnation(service_.incarnation_);
    answer.setStaleIncarnation(stale);
    if (!refusal.empty()) {
      return writePeerFrame(stream_, *message).attach(kj::mv(message));
    }
    accepted_ = true;
    connection_->identify(hello.getFrom());
    service_.learnClientAddr(hello.getFrom(), hello.getClientAddr());
    if (service_.addresses_ != nullptr) answer.setClientAddr(service_.addresses_->self());
    write(kj::mv(message));
    return nullptr;
  }

  void pong(uint64_t nonce) {
    if (writing_) return;  // the dialer has one ping out at a time; it times out
    auto message = kj::heap<capnp::MallocMessageBuilder>(16);
    auto frame = message->initRoot<schema::PeerFrame>();
    frame.setMagic(kPeerFrameMagic);
    frame.setPong(nonce);
    write(kj::mv(message));
  }

  void write(kj::Own<capnp::MallocMessageBuilder> message) {
    KJ_ASSERT(!writing_, "peer connection writes overlap");
    writing_ = true;
    writes_.add(writePeerFrame(stream_, *message).attach(kj::mv(message)).then([this]() {
      writing_ = false;
    }));
  }

  void taskFailed(kj::Exception&& exception) override {
    if (failed_.fulfiller->isWaiting()) failed_.fulfiller->reject(kj::mv(exception));
  }

  RaftService& service_;
  kj::Own<ConnectionHandle> connection_;
  kj::AsyncIoStream& stream_;
  PeerFrameReader reader_;
  bool helloSeen_ = false;
  bool accepted_ = false;
  bool writing_ = false;
  kj::PromiseFulfillerPair<void> failed_;
  kj::TaskSet writes_;
};

RaftService::RaftService(uint64_t clusterId, NodeId self, std::vector<NodeId> members,
                         ReceiveFn receive, std::function<void()> afterBatch, LogFn log,
                         NowFn nowMs)
    : clusterId_(clusterId),
      self_(self),
      members_(std::move(members)),
      receive_(std::move(receive)),
      afterBatch_(std::move(afterBatch)),
      log_(std::move(log)),
      nowMs_(std::move(nowMs)) {}

kj::Promise<void> RaftService::serve(kj::Own<ConnectionHandle> connection,
                                     kj::AsyncIoStream& stream) {
  auto inbound = kj::heap<Inbound>(*this, kj::mv(connection), stream);
  Inbound& in = *inbound;
  return in.run()
      .catch_([this](kj::Exception&& e) {
        // A peer that breaks the protocol, or a connection that fails: it is closed.
        if (e.getType() == kj::Exception::Type::DISCONNECTED) return;
        closedOnError(e.getDescription().cStr());
      })
      .attach(kj::mv(inbound));
}

void RaftService::closedOnError(const std::string& why) {
  ++protocolErrors_;
  logLimited(errorLog_, "closed a peer connection: " + why, "closed");
}

void RaftService::logLimited(LogRateLimiter& limiter, std::string line, const char* verb) {
  uint64_t suppressed = 0;
  if (!limiter.allow(nowMs_(), &suppressed)) return;
  if (suppressed > 0) {
    line += " (" + std::to_string(suppressed) + " more " + verb + " since)";
  }
  log_(line);
}

std::string RaftService::checkIncarnation(NodeId from, uint64_t incarnation, bool* stale) {
  if (knownIncarnations_ == nullptr) return {};
  uint64_t known = 0;
  disk::PeerIncarnations::Seen seen = disk::PeerIncarnations::Seen::Unchecked;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions(
                     [&]() { seen = knownIncarnations_->check(from, incarnation, &known); })) {
    return "node " + std::to_string(self_) + " cannot record node " + std::to_string(from) +
           "'s data dir incarnation: " + e->getDescription().cStr();
  }
  if (seen == disk::PeerIncarnations::Seen::First) {
    log_("peer " + std::to_string(from) + ": data dir incarnation " +
         std::to_string(incarnation) + " recorded");
  }
  if (seen != disk::PeerIncarnations::Seen::Different) return {};
  *stale = true;
  ++refusedStale_;
  return "node " + std::to_string(from) + " presents data dir incarnation " +
         std::to_string(incarnation) + ", but node " + std::to_string(self_) +
         " knew it as incarnation " + std::to_string(known) +
         ": its data dir was wiped or replaced, so it forgot votes and entries it "
         "acknowledged, and it may not rejoin as node " +
         std::to_string(from) +
         " (restore its own data dir, or remove the member and add a new node with --join)";
}

std::string RaftService::checkHello(uint64_t clusterId, NodeId from, uint64_t incarnation,
                                    bool* stale) {
  std::string refusal;
  if (clusterId != clusterId_) {
    refusal = "cluster id " + std::to_string(clusterId) +
              " does not match this node's cluster " + std::to_string(clusterId_);
  } else if (from == self_ ||
             std::find(members_.begin(), members_.end(), from) == members_.end()) {
    refusal = "node " + std::to_string(from) + " is not a peer of node " +
              std::to_string(self_) + " in cluster " + std::to_string(clusterId_);
  } else {
    refusal = checkIncarnation(from, incarnation, stale);
  }
  if (refusal.empty()) return refusal;
  ++refusedHellos_;
  // Once per (cluster, node); a flood of distinct ids is cut off by the bound.
  constexpr size_t kMaxRefusalsLogged = 64;
  auto key = std::make_pair(clusterId, from);
  if (refusalsLogged_.size() < kMaxRefusalsLogged && refusalsLogged_.insert(key).second) {
    log_("refusing peer connection: " + refusal);
  }
  return refusal;
}

void RaftService::learnClientAddr(NodeId from, capnp::Text::Reader text) {
  std::string address(text.cStr(), text.size());
  if (addresses_ != nullptr && addresses_->learn(from, address)) {
    log_("peer " + std::to_string(from) + " serves clients at " + address);
  }
}

void RaftService::dropped(const std::string& why) {
  ++dropped_;
  logLimited(dropLog_, "dropped a peer message: " + why, "dropped");
}

void RaftService::deliver(capnp::List<schema::PeerEnvelope>::Reader batch) {
  if (stopped_) return;
  for (auto envelope : batch) {
    Message msg;
    std::string error;
    if (!codec::fromCapnp(envelope, clusterId_, &msg, &error)) {
      dropped(error);
      continue;
    }
    if (msg.to != self_) {
      dropped("message for node " + std::to_string(msg.to) + " arrived at node " +
              std::to_string(self_));
      continue;
    }
    ++received_;
    receive_(std::move(msg));
  }
  afterBatch_();
}

}  // namespace kvr::net
