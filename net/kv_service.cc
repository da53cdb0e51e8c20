#include "net/kv_service.h"

#include <memory>

#include <kj/debug.h>

#include "schemas/codec.h"
#include "schemas/kv.capnp.h"

namespace kvr::net {

std::string explainStatus(const KvReply& reply, const std::string& detail,
                          const std::string& leaderAddr) {
  switch (reply.status) {
    case Status::Ok: return "";
    case Status::NotFound: return "key not found";
    case Status::CasMismatch:
      return "compare-and-swap failed: the current value is not the expected one";
    case Status::NotLeader:
      if (reply.leaderHint != kNoNode) {
        std::string text = "not the leader; try node " + std::to_string(reply.leaderHint);
        if (!leaderAddr.empty()) text += " at " + leaderAddr;
        return text;
      }
      return "not the leader, and the leader is not known yet; retry shortly";
    case Status::Timeout:
      return "request timed out; its outcome is unknown: retry with the same request id";
    case Status::TooLarge: return detail.empty() ? "request or reply too large" : detail;
    case Status::SessionExpired: return "client session expired or unknown; open a new session";
    case Status::Busy: return "node is busy (too many pending requests); retry later";
    case Status::Invalid: return detail.empty() ? "invalid request" : detail;
    case Status::StaleRequest:
      return "request id is older than this session's latest one; use a higher request id";
    case Status::ShuttingDown: return "node is shutting down; retry at another node";
    case Status::TransferInProgress: return "leadership transfer in progress; retry shortly";
  }
  return std::string("unknown status ") + statusName(reply.status);
}

class KvService::Server final : public schema::KvService::Server {
 public:
  Server(KvService& service, kj::Own<ConnectionHandle> connection)
      : service_(service), connection_(kj::mv(connection)) {}

  kj::Promise<void> call(CallContext context) override {
    return tracked(answer(kj::mv(context)));
  }

  kj::Promise<void> snapshot(SnapshotContext context) override {
    connection_->callStarted();
    return tracked(service_.snapshots_.serve(kj::mv(context), kj::addRef(*connection_),
                                             service_.stopped_));
  }

  kj::Promise<void> status(StatusContext context) override {
    connection_->callStarted();
    ReplicaStatus status = service_.replica_.status();
    auto out = context.getResults().initStatus();
    codec::toCapnp(status, out);
    if (service_.addresses_ != nullptr) {
      out.setClientAddr(service_.addresses_->self());
      out.setLeaderAddr(status.leader == status.id ? service_.addresses_->self()
                                                   : service_.addresses_->of(status.leader));
    }
    connection_->callFinished();
    return kj::READY_NOW;
  }

 private:
  // Marks the connection busy until `answered` completes or is cancelled.
  kj::Promise<void> tracked(kj::Promise<void> answered) {
    return answered.attach(
        kj::defer([c = kj::addRef(*connection_)]() mutable { c->callFinished(); }));
  }

  kj::Promise<void> answer(CallContext context) {
    connection_->callStarted();
    ++service_.requests_;
    auto params = context.getParams();
    KvCommand cmd;
    std::string why;
    KvReply early;
    bool decoded = codec::fromCapnp(params.getCommand(), &cmd, &why);
    ClientMetrics* metrics = service_.metrics_;
    ClientMetrics::Request metered;
    if (metrics != nullptr) metered = metrics->started(decoded ? &cmd : nullptr);
    if (!decoded) {
      early.status = Status::Invalid;
    } else if (service_.stopped_) {
      early.status = Status::ShuttingDown;
    } else {
      early.status = validate(cmd, &why);
    }
    if (early.status != Status::Ok) {
      if (metrics != nullptr) metrics->finished(metered, early.status);
      fill(context, early, why, service_);
      return kj::READY_NOW;
    }

    // The replica may answer synchronously (stale read, not leader) or much later.
    auto paf = kj::newPromiseAndFulfiller<KvReply>();
    // ReplyFn must be copyable; the fulfiller is not.
    auto fulfiller = std::make_shared<kj::Own<kj::PromiseFulfiller<KvReply>>>(
        kj::mv(paf.fulfiller));
    ReadMode mode = params.getStale() ? ReadMode::Stale : ReadMode::Linearizable;
    if (metrics != nullptr) metrics->submitted(metered);
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                  service_.replica_.submit(cmd, mode,
                                           [fulfiller, metrics, metered](KvReply reply) {
                                             if (metrics != nullptr)
                                               metrics->finished(metered, reply.status);
                                             (*fulfiller)->fulfill(std::move(reply));
                                           });
                })) {
      service_.fatal_(std::string("replica failed on a client request: ") +
                      e->getDescription().cStr());
    }
    service_.afterInput_();
    return paf.promise.then([context, &service = service_](KvReply reply) mutable {
      fill(context, reply, "", service);
    });
  }

  static void fill(CallContext& context, const KvReply& reply, const std::string& detail,
                   const KvService& service) {
    auto out = context.getResults().initReply();
    codec::toCapnp(reply, out);
    std::string leaderAddr;
    if (reply.status == Status::NotLeader && service.addresses_ != nullptr) {
      leaderAddr = service.addresses_->of(reply.leaderHint);
      if (!leaderAddr.empty()) out.setLeaderAddr(leaderAddr);
    }
    std::string error = explainStatus(reply, detail, leaderAddr);
    if (reply.status == Status::NotLeader && reply.leaderHint == kNoNode &&
        service.noLeaderDetail_) {
      error = "not the leader, and the leader is not known yet: " + service.noLeaderDetail_() +
              "; retry shortly";
    }
    if (!error.empty()) out.setError(error);
  }

  KvService& service_;
  kj::Own<ConnectionHandle> connection_;
};

KvService::KvService(Replica& replica, std::function<void()> afterInput, FatalFn fatal,
                     uint64_t clusterId)
    : replica_(replica),
      afterInput_(std::move(afterInput)),
      fatal_(std::move(fatal)),
      snapshots_(replica, clusterId, afterInput_, fatal_) {}

capnp::Capability::Client KvService::newConnection(kj::Own<ConnectionHandle> connection) {
  return kj::heap<Server>(*this, kj::mv(connection));
}

}  // namespace kvr::net
