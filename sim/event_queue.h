// The simulator's discrete event queue: virtual time in nanoseconds, ties broken by
// insertion order, so the same schedule always runs in the same order.
#pragma once

#include <cstdint>
#include <functional>
#include <queue>
#include <vector>

#include <kj/debug.h>

namespace kvr::sim {

class EventQueue {
 public:
  using Action = std::function<void()>;

  uint64_t now() const { return now_; }
  size_t size() const { return heap_.size(); }
  uint64_t executed() const { return executed_; }

  void at(uint64_t time, Action action) {
    KJ_REQUIRE(time >= now_, "scheduling into the past", time, now_);
    KJ_REQUIRE(heap_.size() < kMaxEvents, "event queue overflow");
    heap_.push(Event{time, nextSeq_++, std::move(action)});
  }
  void after(uint64_t delay, Action action) { at(now_ + delay, std::move(action)); }

  // Runs the next event; false when empty.
  bool runOne() {
    if (heap_.empty()) return false;
    Event ev = std::move(const_cast<Event&>(heap_.top()));
    heap_.pop();
    now_ = ev.time;
    ++executed_;
    ev.action();
    return true;
  }
  uint64_t nextTime() const { return heap_.empty() ? UINT64_MAX : heap_.top().time; }

  static constexpr size_t kMaxEvents = 4'000'000;

 private:
  struct Event {
    uint64_t time;
    uint64_t seq;
    Action action;
    bool operator>(const Event& o) const {
      return time != o.time ? time > o.time : seq > o.seq;
    }
  };
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> heap_;
  uint64_t now_ = 0;
  uint64_t nextSeq_ = 0;
  uint64_t executed_ = 0;
};

}  // namespace kvr::sim
