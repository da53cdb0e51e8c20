// kj's event loop running as a guest inside a libuv loop.
//
// UvEventPort owns a kj::EventLoop, its WaitScope and a kj timer, all bound to one
// uv_loop_t on the thread that created the port. Two ways to drive it:
//
//  * From libuv: run the uv loop as usual (uv_run). Whenever kj has work queued, an idle
//    handle runs kj's queue from a uv callback, so promises made inside any uv callback
//    make progress. Cross-thread wake-ups (kj::Executor, cross-thread fulfillers) arrive
//    through a uv_async handle.
//  * From kj: at top level (never inside a uv callback) call
//    `promise.wait(port.waitScope())`; kj then runs the uv loop one iteration at a time
//    until the promise resolves. (kj 0.9.2 does not forbid wait() inside promise
//    callbacks; when those callbacks run from uv_run, this port throws instead of
//    re-entering uv_run. A wait() inside your own uv callbacks cannot be detected.)
//
// Loop liveness: the port's own handles do not keep uv_run(UV_RUN_DEFAULT) going; pending
// kj work, kj timers and awaited socket events do. Work that only another thread can
// finish (a cross-thread fulfiller) needs promise.wait() or some other handle to keep the
// loop alive.
//
// Destruction: destroy everything that uses kj promises first, then the port; then run the
// uv loop once more so that the port's closed handles are freed before uv_loop_close().
#pragma once

#include <uv.h>

#include <atomic>

#include <kj/async.h>

#include "net/uv_handle.h"
#include "net/uv_timer.h"

namespace kvr::net {

class UvEventPort final : public kj::EventPort {
 public:
  explicit UvEventPort(uv_loop_t* loop);
  ~UvEventPort() noexcept(false);
  KJ_DISALLOW_COPY(UvEventPort);

  uv_loop_t* uvLoop() const { return loop_; }
  kj::EventLoop& kjLoop() { return kjLoop_; }
  kj::WaitScope& waitScope() { return waitScope_; }
  UvTimer& timer() { return timer_; }

  // kj::EventPort
  bool wait() override;
  bool poll() override;
  void setRunnable(bool runnable) override;
  void wake() const override;

  // How many kj events one idle callback runs before yielding to libuv for I/O, so a kj
  // task that keeps queueing work cannot starve sockets and timers.
  static constexpr uint kMaxTurnsPerCallback = 1024;

 private:
  static void onIdle(uv_idle_t* handle);
  static void onAsync(uv_async_t* handle);
  static void onPrepare(uv_prepare_t* handle);

  // Runs uv_run(mode) on behalf of kj's own wait()/poll().
  void runUvForKj(uv_run_mode mode);
  // Runs kj code from inside a uv callback; an exception escaping it is fatal (it cannot
  // unwind through libuv's C frames).
  template <typename Func>
  void runKjFromUv(Func&& func);
  void updateIdle();

  uv_loop_t* loop_;
  UvHandle<uv_idle_t> idle_;        // active while kj has queued events
  UvHandle<uv_async_t> async_;      // cross-thread wake()
  UvHandle<uv_prepare_t> prepare_;  // once per iteration: advance kj timers
  UvTimer timer_;

  bool runnable_ = false;         // last value kj passed to setRunnable()
  bool insideKjWait_ = false;     // uv_run is nested inside kj's wait()/poll()
  bool runningKjFromUv_ = false;  // kj's queue is being run from a uv callback
  mutable std::atomic<bool> woken_{false};

  // Declared last: destroyed first, while the handles above still exist.
  kj::EventLoop kjLoop_;
  kj::WaitScope waitScope_;
};

}  // namespace kvr::net
