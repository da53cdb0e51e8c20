#include "net/uv_timer.h"

#include <kj/debug.h>

namespace kvr::net {

kj::TimePoint UvTimer::fromLoopMillis(uint64_t millis) {
  return kj::origin<kj::TimePoint>() + static_cast<int64_t>(millis) * kj::MILLISECONDS;
}

UvTimer::UvTimer(uv_loop_t* loop) : loop_(loop), pending_(fromLoopMillis(uv_now(loop))) {
  handle_.checkInit(uv_timer_init(loop_, handle_.get()), "uv_timer_init");
  handle_.get()->data = this;
}

UvTimer::~UvTimer() noexcept(false) {
  // Close the uv timer first: no callback may reach this object once destruction begins.
  handle_.close();
}

kj::TimePoint UvTimer::now() const { return fromLoopMillis(uv_now(loop_)); }

kj::Promise<void> UvTimer::atTime(kj::TimePoint time) {
  auto promise = pending_.atTime(time);
  rearm();
  return promise;
}

kj::Promise<void> UvTimer::afterDelay(kj::Duration delay) {
  // Measured from the loop clock, not from the last advance(): the loop may have slept
  // in between.
  return atTime(now() + delay);
}

void UvTimer::advance() {
  kj::TimePoint loopTime = now();
  // uv_now never goes backwards; guard anyway so a misuse cannot abort inside TimerImpl.
  if (loopTime >= pending_.now()) pending_.advanceTo(loopTime);
  rearm();
}

void UvTimer::rearm() {
  KJ_IF_MAYBE(next, pending_.nextEvent()) {
    KJ_IF_MAYBE(armed, armedFor_) {
      if (*armed == *next) return;
    }
    kj::Duration wait = *next - now();
    uint64_t delayMs = 0;
    if (wait > 0 * kj::NANOSECONDS) {
      // Round up so the uv timer never fires before the kj deadline.
      delayMs = static_cast<uint64_t>((wait + kj::MILLISECONDS - 1 * kj::NANOSECONDS) /
                                      kj::MILLISECONDS);
    }
    int status = uv_timer_start(handle_.get(), &UvTimer::onTimer, delayMs, 0);
    KJ_ASSERT(status == 0, "uv_timer_start failed", uv_strerror(status));
    armedFor_ = *next;
  } else {
    if (armedFor_ != nullptr) {
      uv_timer_stop(handle_.get());
      armedFor_ = nullptr;
    }
  }
}

void UvTimer::onTimer(uv_timer_t* handle) {
  auto* self = static_cast<UvTimer*>(handle->data);
  if (self == nullptr) return;
  self->armedFor_ = nullptr;
  self->advance();
}

}  // namespace kvr::net
