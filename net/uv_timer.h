// A kj::Timer driven by a libuv loop.
//
// Time is the loop's clock (uv_now, milliseconds, cached at the start of each loop
// iteration), which matches kj's rule that time does not pass while callbacks run. The
// pending kj timers live in a kj::TimerImpl; a single uv timer is armed for the earliest
// of them. UvEventPort calls advance() once per loop iteration (from a prepare handle) so
// that cancelled kj timers stop keeping the uv loop alive.
#pragma once

#include <uv.h>

#include <kj/async.h>
#include <kj/timer.h>

#include "net/uv_handle.h"

namespace kvr::net {

class UvTimer final : public kj::Timer {
 public:
  explicit UvTimer(uv_loop_t* loop);
  ~UvTimer() noexcept(false);
  KJ_DISALLOW_COPY(UvTimer);

  // kj::Timer
  kj::TimePoint now() const override;
  kj::Promise<void> atTime(kj::TimePoint time) override;
  kj::Promise<void> afterDelay(kj::Duration delay) override;

  // Fires every kj timer whose time has come (by the loop clock), then re-arms the uv
  // timer for the next one (or stops it when none is left).
  void advance();

  // Converts a loop-clock reading (uv_now) to the kj time scale used by this timer.
  static kj::TimePoint fromLoopMillis(uint64_t millis);

 private:
  static void onTimer(uv_timer_t* handle);
  void rearm();

  uv_loop_t* loop_;
  kj::TimerImpl pending_;
  UvHandle<uv_timer_t> handle_;
  kj::Maybe<kj::TimePoint> armedFor_;  // the deadline the uv timer is currently armed for
};

}  // namespace kvr::net
