// The node's monotonic clock, read from libuv, and the bookkeeping for its Raft tick.
//
// The node calls Replica::tick() from a repeating uv timer. Timers can fire late (a long
// fsync completion, a busy loop), so the handler asks TickSchedule how many whole tick
// intervals have really passed and ticks that many times, bounded so that a long stall
// does not turn into a burst of elections.
#pragma once

#include <uv.h>

#include <cstdint>

#include <kj/debug.h>

namespace kvr::net {

class LoopClock {
 public:
  explicit LoopClock(uv_loop_t* loop) : loop_(loop) {}

  // Milliseconds on the loop's monotonic clock, as cached at the start of the current loop
  // iteration (what uv timers use). Cheap; does not advance within a callback.
  uint64_t nowMs() const { return uv_now(loop_); }

  // Nanoseconds on the monotonic clock, read now. For measuring durations.
  static uint64_t preciseNowNs() { return uv_hrtime(); }

 private:
  uv_loop_t* loop_;
};

class TickSchedule {
 public:
  // `intervalMs` > 0; `maxCatchUp` >= 1 bounds the ticks reported by one call.
  TickSchedule(uint64_t startMs, uint64_t intervalMs, uint32_t maxCatchUp)
      : nextDueMs_(startMs + intervalMs), intervalMs_(intervalMs), maxCatchUp_(maxCatchUp) {
    KJ_REQUIRE(intervalMs > 0, "tick interval must be positive");
    KJ_REQUIRE(maxCatchUp >= 1, "must allow at least one tick per call");
  }

  // The number of ticks due at `nowMs` (0 if called early). Intervals missed beyond
  // `maxCatchUp` are dropped: the schedule restarts from now.
  uint32_t ticksDue(uint64_t nowMs) {
    if (nowMs < nextDueMs_) return 0;
    uint64_t due = (nowMs - nextDueMs_) / intervalMs_ + 1;
    if (due > maxCatchUp_) {
      nextDueMs_ = nowMs + intervalMs_;
      return maxCatchUp_;
    }
    nextDueMs_ += due * intervalMs_;
    return static_cast<uint32_t>(due);
  }

  // When the next tick is due, for arming a one-shot timer.
  uint64_t nextDueMs() const { return nextDueMs_; }

 private:
  uint64_t nextDueMs_;
  uint64_t intervalMs_;
  uint32_t maxCatchUp_;
};

}  // namespace kvr::net
