#include "net/raft_service.h"

#include <algorithm>

#include <kj/debug.h>

#include "schemas/codec.h"
#include "schemas/raft.capnp.h"

namespace kvr::net {

class RaftService::Connection final : public schema::RaftPeer::Server {
 public:
  Connection(RaftService& service, kj::Own<ConnectionHandle> connection)
      : service_(service), connection_(kj::mv(connection)) {}

  kj::Promise<void> hello(HelloContext context) override {
    auto params = context.getParams();
    std::string refusal = service_.checkHello(params.getClusterId(), params.getFrom());
    auto results = context.getResults();
    results.setOk(refusal.empty());
    results.setReason(refusal);
    if (refusal.empty()) {
      KJ_REQUIRE(!accepted_ || from_ == params.getFrom(), "hello again as another node", from_,
                 params.getFrom());
      accepted_ = true;
      from_ = params.getFrom();
      connection_->identify(from_);
      service_.learnClientAddr(from_, params.getClientAddr());
      if (service_.addresses_ != nullptr) results.setClientAddr(service_.addresses_->self());
    }
    refusal_ = std::move(refusal);  // the latest hello decides
    return kj::READY_NOW;
  }

  kj::Promise<void> deliver(DeliverContext context) override {
    // A refused peer learns why on every call; its messages never reach the replica.
    KJ_REQUIRE(refusal_.empty(), "refused", refusal_);
    KJ_REQUIRE(accepted_, "deliver before an accepted hello");
    service_.deliver(context.getParams().getBatch());
    return kj::READY_NOW;
  }

 private:
  RaftService& service_;
  kj::Own<ConnectionHandle> connection_;
  std::string refusal_;
  bool accepted_ = false;
  NodeId from_ = kNoNode;
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

capnp::Capability::Client RaftService::newConnection(kj::Own<ConnectionHandle> connection) {
  return kj::heap<Connection>(*this, kj::mv(connection));
}

std::string RaftService::checkHello(uint64_t clusterId, NodeId from) {
  std::string refusal;
  if (clusterId != clusterId_) {
    refusal = "cluster id " + std::to_string(clusterId) +
              " does not match this node's cluster " + std::to_string(clusterId_);
  } else if (from == self_ ||
             std::find(members_.begin(), members_.end(), from) == members_.end()) {
    refusal = "node " + std::to_string(from) + " is not a peer of node " +
              std::to_string(self_) + " in cluster " + std::to_string(clusterId_);
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
  uint64_t suppressed = 0;
  if (dropLog_.allow(nowMs_(), &suppressed)) {
    std::string line = "dropped a peer message: " + why;
    if (suppressed > 0) line += " (" + std::to_string(suppressed) + " more dropped since)";
    log_(line);
  }
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
