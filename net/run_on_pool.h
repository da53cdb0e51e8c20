// Runs blocking work (a WAL fsync, a snapshot write) on libuv's thread pool and delivers
// the result as a kj promise on the loop thread.
//
//     kj::Promise<size_t> written = runOnPool(loop, [fd, data]() { ...; return n; });
//
// The work function runs on a pool thread: it must not touch kj promises, the event loop
// or anything else owned by the loop thread, and it must be safe to run concurrently with
// the loop. An exception it throws rejects the promise. Dropping the promise does not stop
// work already handed to the pool; its result is then discarded (the function and the
// result are destroyed on the loop thread).
#pragma once

#include <uv.h>

#include <memory>
#include <type_traits>

#include <kj/async.h>
#include <kj/debug.h>
#include <kj/function.h>

namespace kvr::net {

namespace detail {

// One unit of pool work. Owned by libuv from queuePoolJob() until its completion runs.
class PoolJob {
 public:
  virtual ~PoolJob() noexcept(false) = default;
  // On a pool thread. Must not throw.
  virtual void runOnPoolThread() noexcept = 0;
  // On the loop thread; `status` is 0, or UV_ECANCELED if the job never ran.
  virtual void completeOnLoopThread(int status) = 0;

  uv_work_t request = {};
};

// Throws (and destroys the job) if libuv refuses the work.
void queuePoolJob(uv_loop_t* loop, std::unique_ptr<PoolJob> job);

template <typename T>
class TypedPoolJob final : public PoolJob {
 public:
  TypedPoolJob(kj::Function<T()> work, kj::Own<kj::PromiseFulfiller<T>> fulfiller)
      : work_(kj::mv(work)), fulfiller_(kj::mv(fulfiller)) {}

  void runOnPoolThread() noexcept override {
    error_ = kj::runCatchingExceptions([this]() {
      if constexpr (std::is_void_v<T>) {
        work_();
        done_ = true;
      } else {
        value_ = work_();
      }
    });
  }

  void completeOnLoopThread(int status) override {
    if (status != 0) {
      fulfiller_->reject(
          KJ_EXCEPTION(FAILED, "thread-pool work did not run", uv_strerror(status)));
      return;
    }
    KJ_IF_MAYBE(e, error_) {
      fulfiller_->reject(kj::mv(*e));
      return;
    }
    if constexpr (std::is_void_v<T>) {
      KJ_ASSERT(done_);
      fulfiller_->fulfill();
    } else {
      KJ_IF_MAYBE(v, value_) {
        fulfiller_->fulfill(kj::mv(*v));
      } else {
        KJ_FAIL_ASSERT("thread-pool work finished without a result");
      }
    }
  }

 private:
  kj::Function<T()> work_;
  kj::Own<kj::PromiseFulfiller<T>> fulfiller_;  // touched only on the loop thread
  kj::Maybe<kj::Exception> error_;
  std::conditional_t<std::is_void_v<T>, bool, kj::Maybe<T>> value_{};
  bool done_ = false;
};

}  // namespace detail

// `work`: any callable taking no arguments; T is what it returns (may be void).
template <typename Func, typename T = std::invoke_result_t<Func&>>
kj::Promise<T> runOnPool(uv_loop_t* loop, Func&& work) {
  auto paf = kj::newPromiseAndFulfiller<T>();
  detail::queuePoolJob(loop, std::make_unique<detail::TypedPoolJob<T>>(kj::Function<T()>(
                                                                           kj::fwd<Func>(work)),
                                                                       kj::mv(paf.fulfiller)));
  return kj::mv(paf.promise);
}

}  // namespace kvr::net
