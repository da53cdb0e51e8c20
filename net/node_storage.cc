#include "net/node_storage.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <thread>

#include <kj/debug.h>

#include "net/metered_fs.h"
#include "net/run_on_pool.h"

namespace kvr::net {
namespace {

// The prepare job runs this much nicer than the loop and the WAL writer: serializing the
// store (twice: size and checksum, then the file) is CPU work that three nodes on two
// cores started at once, starving the loops (issue 10: loop lags of 60-70 ms).
constexpr int kSnapshotNice = 10;
constexpr int kMaxNice = 19;

int currentThreadId() { return static_cast<int>(::syscall(SYS_gettid)); }

// Whether a thread may lower its nice value back after raising it (an unprivileged
// process without RLIMIT_NICE may not): probed once, on a throwaway thread, so that a
// pool thread is never left nicer than it was.
bool canRestoreNice() {
  static const bool can = []() {
    bool ok = false;
    std::thread probe([&ok]() {
      const int tid = currentThreadId();
      errno = 0;
      const int before = ::getpriority(PRIO_PROCESS, static_cast<id_t>(tid));
      if (errno != 0 || before >= kMaxNice) return;
      if (::setpriority(PRIO_PROCESS, static_cast<id_t>(tid), before + 1) != 0) return;
      ok = ::setpriority(PRIO_PROCESS, static_cast<id_t>(tid), before) == 0;
    });
    probe.join();
    return ok;
  }();
  return can;
}

// Makes the calling thread nicer by kSnapshotNice while alive, if that can be undone.
class NicerScope {
 public:
  NicerScope() {
    if (!canRestoreNice()) return;
    tid_ = currentThreadId();
    errno = 0;
    before_ = ::getpriority(PRIO_PROCESS, static_cast<id_t>(tid_));
    if (errno != 0) return;
    lowered_ = ::setpriority(PRIO_PROCESS, static_cast<id_t>(tid_),
                             std::min(before_ + kSnapshotNice, kMaxNice)) == 0;
  }
  ~NicerScope() {
    if (lowered_) (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(tid_), before_);
  }
  KJ_DISALLOW_COPY(NicerScope);

 private:
  int tid_ = 0;
  int before_ = 0;
  bool lowered_ = false;
};

}  // namespace

NodeStorage::NodeStorage(uv_loop_t* loop, kj::Own<disk::DiskStorage> disk, FatalFn fatal)
    : loop_(loop), disk_(kj::mv(disk)), fatal_(std::move(fatal)), tasks_(*this) {}

// A write still on the pool references disk_; the owner must stop() and wait first.
// Dying with one in flight would let the pool thread write through a dangling pointer.
NodeStorage::~NodeStorage() noexcept {
  if (writing_) failStop("storage: destroyed with a WAL write in flight (stop() first)");
  if (preparing_) failStop("storage: destroyed with a snapshot write in flight (stop() first)");
  if (cleaning_) failStop("storage: destroyed with a file removal in flight (stop() first)");
}

bool NodeStorage::prepareSnapshot(const SnapshotMeta& meta,
                                  std::shared_ptr<kvr::SnapshotSource> source) {
  if (failed_ || stopping_ || preparing_) return false;
  preparing_ = true;
  disk::DiskStorage* disk = disk_.get();
  // Runs on a pool thread: serializes the frozen view (the loop keeps applying) and
  // writes the file; touches only the snapshot half of DiskStorage.
  // (A shared_ptr result, not std::optional: GCC 12 warns about the latter in kj's
  // ExceptionOr.)
  auto written = runOnPool(loop_,
                           [disk, meta, source,
                            pace = snapshotPace_]() -> std::shared_ptr<disk::SnapshotMarker> {
                             SnapshotPace paced(pace);
                             NicerScope nicer;
                             std::shared_ptr<disk::SnapshotMarker> marker;
                             KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                                           marker = std::make_shared<disk::SnapshotMarker>(
                                               disk->prepareSnapshot(meta, *source));
                                         })) {
                               // E.g. a leader's snapshot install removed the temp file: the batch writes it.
                               (void)e;
                               source->materialize();
                             }
                             return marker;
                           });
  tasks_.add(written.then(
      [this, index = meta.index](std::shared_ptr<disk::SnapshotMarker> marker) {
        preparing_ = false;
        if (marker) disk_->notePrepared(*marker);
        notifyIdle();
        if (!stopping_ && !failed_ && prepared_) prepared_(index);
      },
      [this](kj::Exception&& e) {
        preparing_ = false;
        failed_ = true;
        notifyIdle();
        fatal_(std::string("storage: serializing a snapshot failed, stopping: ") +
               e.getDescription().cStr());
      }));
  return true;
}

void NodeStorage::notifyIdle() {
  if (writing_ || preparing_ || cleaning_) return;
  KJ_IF_MAYBE(w, idleWaiter_) {
    (*w)->fulfill();
    idleWaiter_ = nullptr;
  }
}

void NodeStorage::persist(PersistBatch&& batch) {
  if (failed_) return;  // fail-stop already reported: nothing becomes durable any more
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { disk_->persist(std::move(batch)); })) {
    failed_ = true;
    fatal_(std::string("storage: cannot queue a batch: ") + e->getDescription().cStr());
    return;
  }
  scheduleWrite();
}

// Deferred to the end of the current kj turn so that all batches one input produces go
// into a single write.
void NodeStorage::scheduleWrite() {
  if (writeScheduled_ || writing_ || stopping_ || failed_) return;
  writeScheduled_ = true;
  tasks_.add(kj::evalLater([this]() {
    writeScheduled_ = false;
    startWrite();
  }));
}

void NodeStorage::startWrite() {
  if (writing_ || stopping_ || failed_ || !disk_->hasQueued()) return;
  writing_ = true;
  disk::DiskStorage* disk = disk_.get();
  disk::QueuedWrites work = disk_->takeQueued();
  // Runs on a pool thread: touches only the writer half of DiskStorage.
  // (A shared_ptr result, as for prepareSnapshot: kj's ExceptionOr wants it copyable.)
  auto written = runOnPool(loop_, [disk, work = std::move(work)]() mutable {
    return std::make_shared<disk::Written>(disk->writeDeferringCleanup(std::move(work)));
  });
  tasks_.add(written.then(
      [this](std::shared_ptr<disk::Written> done) {
        writing_ = false;
        ++writesCompleted_;
        if (!done->cleanup.empty()) {
          KJ_ASSERT(cleanups_.size() < kMaxPendingCleanups, "file removals pile up");
          cleanups_.push_back(std::move(done->cleanup));
          startCleanup();
        }
        for (uint64_t seq : done->durable) {
          ++batchesDurable_;
          if (durable_) durable_(seq);
        }
        notifyIdle();
        startWrite();  // whatever queued up meanwhile goes in the next write
      },
      [this](kj::Exception&& e) {
        writing_ = false;
        failed_ = true;
        notifyIdle();
        fatal_(std::string("storage: write or fsync failed, stopping: ") +
               e.getDescription().cStr());
      }));
}

// Removes the files a write made obsolete, one job at a time in the order the writes
// returned them, beside the WAL writes: never in their way.
void NodeStorage::startCleanup() {
  if (cleaning_ || failed_ || cleanups_.empty()) return;
  cleaning_ = true;
  disk::DiskStorage* disk = disk_.get();
  auto removed = runOnPool(loop_, [disk, work = std::move(cleanups_.front())]() mutable {
    disk->cleanup(std::move(work));
  });
  cleanups_.pop_front();
  tasks_.add(removed.then(
      [this]() {
        cleaning_ = false;
        ++cleanupsCompleted_;
        startCleanup();
        notifyIdle();
      },
      [this](kj::Exception&& e) {
        cleaning_ = false;
        failed_ = true;
        notifyIdle();
        fatal_(std::string("storage: removing obsolete files failed, stopping: ") +
               e.getDescription().cStr());
      }));
}

kj::Promise<void> NodeStorage::stop() {
  stopping_ = true;
  if (!writing_ && !preparing_ && !cleaning_) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  idleWaiter_ = kj::mv(paf.fulfiller);
  return kj::mv(paf.promise);
}

void NodeStorage::taskFailed(kj::Exception&& exception) {
  // Reached only when the durable callback (the replica) throws: an invariant broke.
  failed_ = true;
  fatal_(std::string("storage: reporting a durable batch failed: ") +
         exception.getDescription().cStr());
}

}  // namespace kvr::net
