#include "net/uv_event_port.h"

#include <cstdlib>

#include <kj/debug.h>

namespace kvr::net {

UvEventPort::UvEventPort(uv_loop_t* loop)
    : loop_(loop), timer_(loop), kjLoop_(*this), waitScope_(kjLoop_) {
  idle_.checkInit(uv_idle_init(loop_, idle_.get()), "uv_idle_init");
  idle_.get()->data = this;

  async_.checkInit(uv_async_init(loop_, async_.get(), &UvEventPort::onAsync), "uv_async_init");
  async_.get()->data = this;
  uv_unref(async_.base());

  prepare_.checkInit(uv_prepare_init(loop_, prepare_.get()), "uv_prepare_init");
  prepare_.get()->data = this;
  uv_prepare_start(prepare_.get(), &UvEventPort::onPrepare);
  uv_unref(prepare_.base());
}

UvEventPort::~UvEventPort() noexcept(false) {
  // Members go in reverse order: the wait scope and kj loop first (while the handles they
  // may still poke exist), then the timer and the handles, which close asynchronously.
}

bool UvEventPort::wait() {
  runUvForKj(UV_RUN_ONCE);
  return woken_.exchange(false);
}

bool UvEventPort::poll() {
  // When kj runs from a uv callback (e.g. draining after onAsync) we are already inside
  // uv_run; the wake-up itself is the only news to report.
  if (!runningKjFromUv_) runUvForKj(UV_RUN_NOWAIT);
  return woken_.exchange(false);
}

void UvEventPort::setRunnable(bool runnable) {
  runnable_ = runnable;
  updateIdle();
}

void UvEventPort::wake() const {
  woken_.store(true);
  // uv_async_send is the one libuv call that is safe from any thread.
  uv_async_send(async_.get());
}

void UvEventPort::updateIdle() {
  // While kj waits inside uv_run it runs its own queue; an active idle handle would only
  // turn a blocking wait into a spin.
  if (runnable_ && !insideKjWait_) {
    uv_idle_start(idle_.get(), &UvEventPort::onIdle);
  } else {
    uv_idle_stop(idle_.get());
  }
}

void UvEventPort::runUvForKj(uv_run_mode mode) {
  KJ_REQUIRE(!insideKjWait_ && !runningKjFromUv_,
             "promise.wait() inside a callback running on the uv loop would re-enter uv_run; "
             "chain with .then() instead");
  insideKjWait_ = true;
  updateIdle();
  // kj may be waiting for a cross-thread event only; the async handle must keep the loop
  // from returning at once for lack of active handles.
  uv_ref(async_.base());
  timer_.advance();
  uv_run(loop_, mode);
  uv_unref(async_.base());
  insideKjWait_ = false;
  timer_.advance();
  updateIdle();
}

template <typename Func>
void UvEventPort::runKjFromUv(Func&& func) {
  bool outer = runningKjFromUv_;
  runningKjFromUv_ = true;
  KJ_DEFER(runningKjFromUv_ = outer);
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions(kj::fwd<Func>(func))) {
    KJ_LOG(FATAL, "exception escaped the kj event loop inside a libuv callback", *exception);
    std::abort();
  }
}

void UvEventPort::onIdle(uv_idle_t* handle) {
  auto* self = static_cast<UvEventPort*>(handle->data);
  if (self == nullptr || self->insideKjWait_) return;
  self->runKjFromUv([self]() { self->kjLoop_.run(kMaxTurnsPerCallback); });
}

void UvEventPort::onAsync(uv_async_t* handle) {
  auto* self = static_cast<UvEventPort*>(handle->data);
  // Inside kj's wait()/poll(), the wake-up is reported by their return value.
  if (self == nullptr || self->insideKjWait_) return;
  self->runKjFromUv([self]() {
    // WaitScope::poll() asks this port's poll() for news, which reports the wake-up, and
    // kj then runs the cross-thread events queued on its executor.
    self->waitScope_.poll();
    // WaitScope::poll() leaves kj's runnable flag as it was; a zero-turn run() syncs it.
    self->kjLoop_.run(0);
  });
}

void UvEventPort::onPrepare(uv_prepare_t* handle) {
  auto* self = static_cast<UvEventPort*>(handle->data);
  if (self == nullptr) return;
  self->runKjFromUv([self]() { self->timer_.advance(); });
  // Inside kj's wait(), events queued by this iteration's timers (kj timers just fired,
  // uv timer callbacks) must end the iteration: the idle handle is off, so uv_run would
  // otherwise block in poll with kj work pending. uv_stop makes this poll non-blocking;
  // UV_RUN_ONCE then returns.
  if (self->insideKjWait_ && self->kjLoop_.isRunnable()) uv_stop(self->loop_);
}

}  // namespace kvr::net
