#include "net/kv_service.h"

#include <algorithm>
#include <memory>

#include <kj/debug.h>

#include "core/limits.h"
#include "core/membership.h"
#include "net/node_config.h"
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
    case Status::Busy:
      return "node is busy (its queue of pending requests is full or not keeping up); retry "
             "later";
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

  kj::Promise<void> callBatch(CallBatchContext context) override {
    return tracked(answerBatch(kj::mv(context)));
  }

  kj::Promise<void> snapshot(SnapshotContext context) override {
    connection_->callStarted();
    return tracked(service_.snapshots_.serve(kj::mv(context), kj::addRef(*connection_),
                                             service_.stopped_));
  }

  kj::Promise<void> admin(AdminContext context) override {
    connection_->callStarted();
    ++service_.requests_;
    return tracked(answerAdmin(kj::mv(context)));
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

  // One decoded command on its way to the replica.
  struct Admitted {
    KvCommand cmd;
    ReadMode mode = ReadMode::Linearizable;
    ClientMetrics::Request metered;
    uint32_t slot = 0;  // its position in the call's replies
  };

  // The replies of one group of submitted commands, collected until the last arrives.
  struct Group {
    kj::Array<KvReply> replies;
    size_t left = 0;
    kj::Own<kj::PromiseFulfiller<kj::Array<KvReply>>> fulfiller;
  };

  // Decodes and checks one command. Answers it into `out` (and returns false) when it
  // must not reach the replica: undecodable, invalid, too large, or the node is stopping.
  bool admit(schema::Command::Reader in, bool stale, Admitted& admitted,
             schema::Reply::Builder out) {
    ++service_.requests_;
    std::string why;
    KvReply early;
    bool decoded = codec::fromCapnp(in, &admitted.cmd, &why);
    ClientMetrics* metrics = service_.metrics_;
    if (metrics != nullptr)
      admitted.metered = metrics->started(decoded ? &admitted.cmd : nullptr);
    if (!decoded) {
      early.status = Status::Invalid;
    } else if (service_.stopped_) {
      early.status = Status::ShuttingDown;
    } else {
      early.status = validate(admitted.cmd, &why);
    }
    if (early.status == Status::Ok) {
      admitted.mode = stale ? ReadMode::Stale : ReadMode::Linearizable;
      return true;
    }
    if (metrics != nullptr) metrics->finished(admitted.metered, early.status);
    fillReply(out, early, why, service_);
    return false;
  }

  // Hands the admitted commands to the replica as one group (one Raft output, hence one
  // persist batch and one Append per follower); resolves with their replies in order.
  // The commands are only read during the call.
  kj::Promise<kj::Array<KvReply>> submitGroup(std::vector<Admitted>& admitted) {
    auto paf = kj::newPromiseAndFulfiller<kj::Array<KvReply>>();
    // ReplyFn must be copyable, the fulfiller is not: the group is shared.
    auto group = std::make_shared<Group>();
    group->replies = kj::heapArray<KvReply>(admitted.size());
    group->left = admitted.size();
    group->fulfiller = kj::mv(paf.fulfiller);
    ClientMetrics* metrics = service_.metrics_;
    std::vector<Replica::Request> requests;
    requests.reserve(admitted.size());
    for (size_t i = 0; i < admitted.size(); ++i) {
      Admitted& a = admitted[i];
      if (metrics != nullptr) metrics->submitted(a.metered);
      requests.push_back({&a.cmd, a.mode, [group, i, metrics, metered = a.metered](KvReply r) {
                            if (metrics != nullptr) metrics->finished(metered, r.status);
                            group->replies[i] = std::move(r);
                            if (--group->left == 0)
                              group->fulfiller->fulfill(kj::mv(group->replies));
                          }});
    }
    // The replica may answer synchronously (stale read, not leader) or much later.
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                  if (requests.size() == 1) {
                    Replica::Request& r = requests[0];
                    service_.replica_.submit(*r.cmd, r.mode, std::move(r.done));
                  } else {
                    service_.replica_.submitBatch(requests);
                  }
                })) {
      service_.fatal_(std::string("replica failed on a client request: ") +
                      e->getDescription().cStr());
    }
    service_.afterInput_();
    return kj::mv(paf.promise);
  }

  kj::Promise<void> answer(CallContext context) {
    connection_->callStarted();
    auto params = context.getParams();
    std::vector<Admitted> admitted(1);
    if (!admit(params.getCommand(), params.getStale(), admitted[0],
               context.getResults().initReply())) {
      return kj::READY_NOW;
    }
    return submitGroup(admitted).then(
        [context, &service = service_](kj::Array<KvReply> replies) mutable {
          fill(context, replies[0], "", service);
        });
  }

  // Why a batch is refused as a whole ("" if it is not).
  static std::string batchTooLarge(size_t commands, size_t bytes) {
    if (commands > limits::kMaxBatchCommands) {
      return "batch of " + std::to_string(commands) + " commands exceeds the limit of " +
             std::to_string(limits::kMaxBatchCommands) + "; split it (nothing in it ran)";
    }
    if (bytes > limits::kMaxBatchBytes) {
      return "batch of " + std::to_string(bytes) + " bytes exceeds the limit of " +
             std::to_string(limits::kMaxBatchBytes) + " bytes; split it (nothing in it ran)";
    }
    return "";
  }

  kj::Promise<void> answerBatch(CallBatchContext context) {
    connection_->callStarted();
    auto items = context.getParams().getItems();
    std::string refusal = batchTooLarge(items.size(),
                                        context.getParams().totalSize().wordCount *
                                            sizeof(capnp::word));
    if (!refusal.empty()) {
      ++service_.requests_;
      KvReply refused;
      refused.status = Status::TooLarge;
      fillReply(context.getResults().initRefused(), refused, refusal, service_);
      return kj::READY_NOW;
    }
    // One first segment for the whole answer (a put's reply is ~10 words, a get's 8 B
    // key / 256 B value one ~45), not a chain of growing ones.
    auto out = context.getResults(capnp::MessageSize{items.size() * 48 + 16, 0})
                   .initReplies(items.size());
    std::vector<Admitted> admitted;
    admitted.reserve(items.size());
    for (uint32_t i = 0; i < items.size(); ++i) {
      Admitted& a = admitted.emplace_back();
      a.slot = i;
      if (!admit(items[i].getCommand(), items[i].getStale(), a, out[i])) admitted.pop_back();
    }
    if (admitted.empty()) return kj::READY_NOW;
    auto slots = kj::heapArray<uint32_t>(admitted.size());
    for (size_t j = 0; j < admitted.size(); ++j) slots[j] = admitted[j].slot;
    return submitGroup(admitted).then([context, slots = kj::mv(slots), &service = service_](
                                          kj::Array<KvReply> replies) mutable {
      auto out = context.getResults().getReplies();
      for (size_t j = 0; j < replies.size(); ++j)
        fillReply(out[slots[j]], replies[j], "", service);
    });
  }

  static void fill(CallContext& context, const KvReply& reply, const std::string& detail,
                   const KvService& service) {
    fillReply(context.getResults().initReply(), reply, detail, service);
  }

  static void fillReply(schema::Reply::Builder out, const KvReply& reply,
                        const std::string& detail, const KvService& service) {
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

  // ---- admin: membership and leadership ----

  // The configuration in force here (the leader's, when it answers ok), with the
  // leader's view of each member's log.
  static void fillMembers(AdminContext& context, const KvService& service) {
    const Raft& raft = service.replica_.raft();
    const ConfState& conf = raft.conf();
    auto results = context.getResults();
    results.setClusterId(service.clusterId_);
    results.setConfIndex(raft.confIndex());
    results.setConfCommitted(raft.confIndex() <= raft.commitIndex());
    std::vector<NodeId> ids = conf.voters;
    ids.insert(ids.end(), conf.learners.begin(), conf.learners.end());
    std::sort(ids.begin(), ids.end());
    auto list = results.initMembers(static_cast<uint>(ids.size()));
    for (uint i = 0; i < ids.size(); ++i) {
      NodeId id = ids[i];
      auto m = list[i];
      m.setId(id);
      const MemberAddr* addr = addrOf(conf, id);
      std::string raftAddr = addr != nullptr ? addr->raftAddr : "";
      if (raftAddr.empty() && service.raftAddrOf_) raftAddr = service.raftAddrOf_(id);
      m.setRaftAddr(raftAddr);
      m.setClientAddr(clientAddrOf(conf, id, service));
      m.setVoter(isVoterIn(conf, id));
      bool self = id == raft.id();
      m.setMatch(self ? raft.lastIndex() : raft.matchOf(id));
      m.setLeader(id == raft.leader());
    }
  }

  static std::string clientAddrOf(const ConfState& conf, NodeId id, const KvService& service) {
    const MemberAddr* addr = addrOf(conf, id);
    if (addr != nullptr && !addr->clientAddr.empty()) return addr->clientAddr;
    if (service.addresses_ == nullptr) return "";
    return id == service.replica_.raft().id() ? service.addresses_->self()
                                              : service.addresses_->of(id);
  }

  static void answerAdmin(AdminContext& context, const KvService& service, Status status,
                          const std::string& error,
                          ConfChangeError confError = ConfChangeError::None,
                          NodeId leaderHint = kNoNode, Index index = 0) {
    KvReply reply;
    reply.status = status;
    reply.leaderHint = leaderHint;
    reply.index = index;
    if (status == Status::NotLeader && reply.leaderHint == kNoNode) {
      reply.leaderHint = service.replica_.status().leader;
    }
    auto out = context.getResults().initReply();
    fillReply(out, reply, error, service);
    if (!error.empty() && status != Status::NotLeader) out.setError(error);
    context.getResults().setConfError(static_cast<uint8_t>(confError));
    if (status == Status::Ok || status == Status::Invalid) fillMembers(context, service);
  }

  kj::Promise<void> answerAdmin(AdminContext context) {
    auto req = context.getParams().getRequest();
    KvService& service = service_;
    if (service.stopped_) {
      answerAdmin(context, service, Status::ShuttingDown, "");
      return kj::READY_NOW;
    }
    const Raft& raft = service.replica_.raft();
    if (raft.role() != Role::Leader) {
      answerAdmin(context, service, Status::NotLeader, "");
      return kj::READY_NOW;
    }
    NodeId id = req.getId();
    ConfChange cc;
    cc.id = id;
    switch (req.getOp()) {
      case schema::AdminOp::MEMBER_LIST:
        answerAdmin(context, service, Status::Ok, "");
        return kj::READY_NOW;
      case schema::AdminOp::LEADER_TRANSFER: return transfer(kj::mv(context), id);
      case schema::AdminOp::MEMBER_ADD: cc.type = ConfChangeType::AddLearner; break;
      case schema::AdminOp::MEMBER_PROMOTE: cc.type = ConfChangeType::Promote; break;
      case schema::AdminOp::MEMBER_REMOVE: cc.type = ConfChangeType::Remove; break;
      default:
        answerAdmin(context, service, Status::Invalid, "unknown admin operation");
        return kj::READY_NOW;
    }
    if (cc.type == ConfChangeType::AddLearner) {
      cc.raftAddr = req.getRaftAddr();
      cc.clientAddr = req.getClientAddr();
      std::string problem = checkHostPort(cc.raftAddr, "raft address");
      if (problem.empty()) problem = checkHostPort(cc.clientAddr, "client address");
      if (problem.empty() && cc.raftAddr == cc.clientAddr) {
        problem = "the raft and the client address must differ";
      }
      if (!problem.empty()) {
        answerAdmin(context, service, Status::Invalid, problem, ConfChangeError::BadAddress);
        return kj::READY_NOW;
      }
      // The configuration knows the raft addresses and the client addresses given to
      // `member add`; the initial members' client addresses are only advertised.
      const ConfState& conf = raft.conf();
      std::vector<NodeId> ids = conf.voters;
      ids.insert(ids.end(), conf.learners.begin(), conf.learners.end());
      for (NodeId member : ids) {
        std::string client = clientAddrOf(conf, member, service);
        std::string raftAddr = service.raftAddrOf_ ? service.raftAddrOf_(member) : "";
        for (const std::string& used : {client, raftAddr}) {
          if (!used.empty() && (used == cc.raftAddr || used == cc.clientAddr) && member != id) {
            answerAdmin(context, service, Status::Invalid,
                        std::string(confChangeErrorText(ConfChangeError::AddressInUse)) +
                            ": node " + std::to_string(member) + " uses " + used,
                        ConfChangeError::AddressInUse);
            return kj::READY_NOW;
          }
        }
      }
    }
    auto paf = kj::newPromiseAndFulfiller<ConfChangeReply>();
    auto fulfiller = std::make_shared<kj::Own<kj::PromiseFulfiller<ConfChangeReply>>>(
        kj::mv(paf.fulfiller));
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                  service.replica_.proposeConfChange(cc, [fulfiller](ConfChangeReply r) {
                    (*fulfiller)->fulfill(kj::mv(r));
                  });
                })) {
      service.fatal_(std::string("replica failed on a membership change: ") +
                     e->getDescription().cStr());
    }
    service.afterInput_();
    return paf.promise.then([context, &service](ConfChangeReply r) mutable {
      Status status = r.status;
      std::string error;
      if (r.error != ConfChangeError::None) error = confChangeErrorText(r.error);
      // Not yet possible, soon possible: the client retries these like a busy node.
      if (r.error == ConfChangeError::NotReady) status = Status::Busy;
      answerAdmin(context, service, status, error, r.error, r.leaderHint, r.index);
    });
  }

  // Hands leadership to voter `target` and answers once it leads (or not in time).
  kj::Promise<void> transfer(AdminContext context, NodeId target) {
    KvService& service = service_;
    const Raft& raft = service.replica_.raft();
    if (target == raft.id()) {
      answerAdmin(context, service, Status::Ok, "");
      return kj::READY_NOW;
    }
    if (!isVoterIn(raft.conf(), target)) {
      std::string why = isLearnerIn(raft.conf(), target)
                            ? "node " + std::to_string(target) + " is a learner, not a voter"
                            : "no member has id " + std::to_string(target);
      answerAdmin(context, service, Status::Invalid, "cannot transfer leadership: " + why,
                  isLearnerIn(raft.conf(), target) ? ConfChangeError::NotLearner
                                                   : ConfChangeError::UnknownNode);
      return kj::READY_NOW;
    }
    bool started = false;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions(
                       [&]() { started = service.replica_.transferLeadership(target); })) {
      service.fatal_(std::string("replica failed on a leadership transfer: ") +
                     e->getDescription().cStr());
    }
    service.afterInput_();
    if (!started) {
      answerAdmin(context, service, Status::NotLeader, "");
      return kj::READY_NOW;
    }
    if (service.timer_ == nullptr) {
      answerAdmin(context, service, Status::Ok, "");
      return kj::READY_NOW;
    }
    return awaitTransfer(service, kj::mv(context), target, kTransferPolls);
  }

  static constexpr uint32_t kTransferPollMs = 10;
  static constexpr uint32_t kTransferPolls = 500;  // 5 s

  static kj::Promise<void> awaitTransfer(KvService& service, AdminContext context,
                                         NodeId target, uint32_t polls) {
    return service.timer_->afterDelay(kTransferPollMs * kj::MILLISECONDS)
        .then([context, target, polls, &service]() mutable -> kj::Promise<void> {
          const Raft& raft = service.replica_.raft();
          if (service.stopped_) {
            answerAdmin(context, service, Status::ShuttingDown, "");
            return kj::READY_NOW;
          }
          if (raft.role() != Role::Leader && raft.leader() == target) {
            answerAdmin(context, service, Status::Ok, "", ConfChangeError::None, target);
            return kj::READY_NOW;
          }
          bool gaveUp = raft.role() == Role::Leader && raft.transferTarget() == kNoNode;
          if (gaveUp || polls == 0) {
            answerAdmin(context, service, Status::Timeout,
                        "leadership did not move to node " + std::to_string(target) +
                            " in time (it may be behind or unreachable); node " +
                            std::to_string(raft.leader()) + " leads");
            return kj::READY_NOW;
          }
          return awaitTransfer(service, kj::mv(context), target, polls - 1);
        });
  }

  KvService& service_;
  kj::Own<ConnectionHandle> connection_;
};

KvService::KvService(Replica& replica, std::function<void()> afterInput, FatalFn fatal,
                     uint64_t clusterId)
    : replica_(replica),
      afterInput_(std::move(afterInput)),
      fatal_(std::move(fatal)),
      snapshots_(replica, clusterId, afterInput_, fatal_),
      clusterId_(clusterId) {}

capnp::Capability::Client KvService::newConnection(kj::Own<ConnectionHandle> connection) {
  return kj::heap<Server>(*this, kj::mv(connection));
}

}  // namespace kvr::net
