// kvr::Storage for a node: disk::DiskStorage with its fsyncs on libuv's thread pool.
//
// persist() encodes and queues on the loop thread (DiskStorage's loop half). One write
// at a time runs on the pool (DiskStorage's writer half): it takes everything queued so
// far, so batches that arrive while a write is in flight share the next append and
// fsync (group commit). When a write returns, the durable seqs are reported in order on
// the loop thread through the DurableFn (the node passes Replica::onPersisted).
//
// Local snapshots: prepareSnapshot() streams the frozen KV view into its file (never
// holding the bytes whole) in a second pool job, beside the WAL writes (which go on
// meanwhile); its completion calls the PreparedFn on the loop (the node passes
// Replica::onSnapshotPrepared), and the batch the replica then persists only appends the
// WAL marker. If preparing fails, the view is serialized in memory instead, the
// PreparedFn is still called and that batch's write writes the file itself.
// The prepare job runs nicer (+10) than the rest when the thread's priority can be
// restored afterwards, and its file is paced (setSnapshotPace).
//
// Obsolete files (the snapshot file a new one replaced, WAL segments it covers) are
// removed by a third pool job after the write that made them obsolete is reported
// durable, one such job at a time: unlinking a file of hundreds of MB and the directory
// fsyncs would otherwise hold up that write's callers and the next write (issue 10:
// 170-400 ms). stop() waits until none is queued or in flight (after a failure, only
// for the one in flight: the next start removes leftovers).
//
// Fail-stop: a failed write or fsync (or a batch the WAL refuses) calls the FatalFn
// once and never reports those batches durable; nothing is retried.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>

#include <kj/async.h>

#include "core/env.h"
#include "disk/disk_storage.h"
#include "net/node_log.h"

namespace kvr::net {

class NodeStorage final : public Storage, private kj::TaskSet::ErrorHandler {
 public:
  using DurableFn = std::function<void(uint64_t seq)>;
  using PreparedFn = std::function<void(Index index)>;

  NodeStorage(uv_loop_t* loop, kj::Own<disk::DiskStorage> disk, FatalFn fatal);
  ~NodeStorage() noexcept override;
  KJ_DISALLOW_COPY(NodeStorage);

  // Set once, before the first persist() can complete.
  void setDurableCallback(DurableFn durable) { durable_ = std::move(durable); }

  void setPreparedCallback(PreparedFn prepared) { prepared_ = std::move(prepared); }

  // The rate a local snapshot's file is written at, at most (0: no limit), through a
  // MeteredFileSystem (net/metered_fs.h SnapshotPace). Only the prepare job is paced;
  // a snapshot the WAL write itself must write (a leader's, or a failed prepare's)
  // never is.
  void setSnapshotPace(uint64_t bytesPerSecond) { snapshotPace_ = bytesPerSecond; }

  void persist(PersistBatch&& batch) override;
  // On the loop thread, beside the pool's writes: reads only files (disk/snapshot_store.h).
  SnapshotReader* snapshotReader() override { return disk_->snapshotReader(); }
  bool prepareSnapshot(const SnapshotMeta& meta,
                       std::shared_ptr<kvr::SnapshotSource> source) override;

  // Starts no further writes; the promise resolves once no write is in flight (the one
  // in flight, if any, completes and is reported durable first).
  kj::Promise<void> stop();

  bool writing() const { return writing_; }
  bool preparing() const { return preparing_; }
  bool cleaning() const { return cleaning_; }
  uint64_t cleanupsCompleted() const { return cleanupsCompleted_; }
  uint64_t writesCompleted() const { return writesCompleted_; }
  uint64_t batchesDurable() const { return batchesDurable_; }

 private:
  void scheduleWrite();
  void startWrite();
  void startCleanup();
  void taskFailed(kj::Exception&& exception) override;
  void notifyIdle();

  uv_loop_t* loop_;
  kj::Own<disk::DiskStorage> disk_;
  FatalFn fatal_;
  DurableFn durable_;
  PreparedFn prepared_;
  uint64_t snapshotPace_ = 0;    // bytes per second, 0: no limit
  bool preparing_ = false;       // a snapshot is being prepared on the pool
  bool writeScheduled_ = false;  // an evalLater will start a write
  bool writing_ = false;         // a write is on the pool
  bool cleaning_ = false;        // a removal of obsolete files is on the pool
  // Bound on removals waiting for the one in flight (one per snapshot marker at most).
  static constexpr size_t kMaxPendingCleanups = 1024;
  std::deque<disk::Cleanup> cleanups_;
  uint64_t cleanupsCompleted_ = 0;
  bool stopping_ = false;
  bool failed_ = false;
  uint64_t writesCompleted_ = 0;
  uint64_t batchesDurable_ = 0;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> idleWaiter_;
  kj::TaskSet tasks_;  // last: destroyed first
};

}  // namespace kvr::net
