#include "net/backup_service.h"

#include <algorithm>

#include <kj/debug.h>

#include "net/kv_service.h"
#include "schemas/codec.h"

namespace kvr::net {

namespace {

// What the replica's read callback hands back: the reply, and the copy if it was taken.
struct Taken {
  KvReply reply;
  std::shared_ptr<const std::string> data;
  Index index = 0;
  Term term = 0;
};

void fillReply(SnapshotSource::Context& context, const KvReply& reply,
               const std::string& detail) {
  auto out = context.getResults().initReply();
  codec::toCapnp(reply, out);
  std::string error = explainStatus(reply, detail);
  if (!error.empty()) out.setError(error);
}

// One of the kMaxOpenSnapshots places, from the call's start until the stream is gone.
class Slot {
 public:
  explicit Slot(std::shared_ptr<uint32_t> open) : open_(std::move(open)) { ++*open_; }
  Slot(Slot&& other) noexcept = default;
  Slot& operator=(Slot&&) = delete;
  ~Slot() {
    if (open_) --*open_;
  }

 private:
  std::shared_ptr<uint32_t> open_;
};

}  // namespace

class SnapshotSource::Stream final : public schema::SnapshotStream::Server {
 public:
  Stream(std::shared_ptr<const std::string> data, Slot slot,
         kj::Own<ConnectionHandle> connection)
      : data_(std::move(data)), slot_(std::move(slot)), connection_(kj::mv(connection)) {}

  kj::Promise<void> read(ReadContext context) override {
    connection_->callStarted();
    auto params = context.getParams();
    const uint64_t offset = std::min<uint64_t>(params.getOffset(), data_->size());
    const size_t n = static_cast<size_t>(
        std::min<uint64_t>({uint64_t(params.getMaxBytes()), uint64_t(kMaxSnapshotReadBytes),
                            data_->size() - offset}));
    context.getResults().setData(
        kj::arrayPtr(reinterpret_cast<const kj::byte*>(data_->data()) + offset, n));
    connection_->callFinished();
    return kj::READY_NOW;
  }

 private:
  std::shared_ptr<const std::string> data_;
  Slot slot_;
  kj::Own<ConnectionHandle> connection_;
};

SnapshotSource::SnapshotSource(Replica& replica, uint64_t clusterId,
                               std::function<void()> afterInput, FatalFn fatal)
    : replica_(replica),
      clusterId_(clusterId),
      afterInput_(std::move(afterInput)),
      fatal_(std::move(fatal)) {}

kj::Promise<void> SnapshotSource::serve(Context context, kj::Own<ConnectionHandle> connection,
                                        bool stopped) {
  KvReply early;
  std::string why;
  if (stopped) {
    early.status = Status::ShuttingDown;
  } else if (*open_ >= kMaxOpenSnapshots) {
    early.status = Status::Busy;
    why = "node is busy: " + std::to_string(*open_) +
          " snapshots are being read already; retry later";
  }
  if (early.status != Status::Ok) {
    fillReply(context, early, why);
    return kj::READY_NOW;
  }

  // A linearizable read of any key is the barrier: its callback runs once the state has
  // applied the confirmed read index. The key's value is not used.
  KvCommand probe;
  probe.op = OpType::Get;
  probe.key = std::string(1, '\0');
  auto paf = kj::newPromiseAndFulfiller<Taken>();
  auto fulfiller = std::make_shared<kj::Own<kj::PromiseFulfiller<Taken>>>(
      kj::mv(paf.fulfiller));
  Replica& replica = replica_;  // the callback may run after this object is gone
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                replica_.submit(
                    probe, ReadMode::Linearizable, [&replica, fulfiller](KvReply reply) {
                      Taken t;
                      t.reply = std::move(reply);
                      if (t.reply.status == Status::Ok || t.reply.status == Status::NotFound) {
                        t.reply = KvReply{};
                        t.index = replica.kv().appliedIndex();
                        auto term = replica.raft().termAt(t.index);
                        if (term) {
                          t.term = *term;
                          t.data = std::make_shared<const std::string>(replica.kv().snapshot());
                        } else {
                          t.reply.status = Status::Busy;  // cannot happen: applied >= log start
                        }
                      }
                      (*fulfiller)->fulfill(kj::mv(t));
                    });
              })) {
    fatal_(std::string("replica failed on a snapshot request: ") + e->getDescription().cStr());
  }
  afterInput_();
  return paf.promise.then([this, context, connection = kj::mv(connection),
                           slot = Slot(open_)](Taken t) mutable {
    fillReply(context, t.reply, "");
    if (t.reply.status != Status::Ok) return;
    auto results = context.getResults();
    auto info = results.initInfo();
    info.setClusterId(clusterId_);
    info.setNodeId(replica_.status().id);
    info.setIndex(t.index);
    info.setTerm(t.term);
    info.setSize(t.data->size());
    results.setStream(kj::heap<Stream>(std::move(t.data), std::move(slot), kj::mv(connection)));
  });
}

}  // namespace kvr::net
