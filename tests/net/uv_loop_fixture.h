// A fresh libuv loop per test, checked for leaked handles at the end.
#pragma once

#include <gtest/gtest.h>
#include <uv.h>

#include <functional>
#include <utility>

#include "net/uv_handle.h"

namespace kvr::net::testing {

inline void countHandle(uv_handle_t* handle, void* count) {
  if (!uv_is_closing(handle)) ++*static_cast<int*>(count);
}

class UvLoopTest : public ::testing::Test {
 protected:
  UvLoopTest() { EXPECT_EQ(uv_loop_init(&loop_), 0); }

  ~UvLoopTest() override {
    // Objects of the test body are gone by now; let their closed handles finish closing.
    for (int i = 0; i < 10; ++i) uv_run(&loop_, UV_RUN_NOWAIT);
    int open = 0;
    uv_walk(&loop_, &countHandle, &open);
    EXPECT_EQ(open, 0) << "uv handles left open by the test";
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "uv loop still busy";
  }

  uv_loop_t* loop() { return &loop_; }

  // Milliseconds elapsed on the monotonic clock since `startNs`.
  static double msSince(uint64_t startNs) { return (uv_hrtime() - startNs) / 1e6; }

 private:
  uv_loop_t loop_;
};

// A one-shot uv timer running a std::function; closes itself when destroyed.
class CallbackTimer {
 public:
  CallbackTimer(uv_loop_t* loop, std::function<void()> callback)
      : callback_(std::move(callback)) {
    handle_.checkInit(uv_timer_init(loop, handle_.get()), "uv_timer_init");
    handle_.get()->data = this;
  }
  void start(uint64_t delayMs) {
    uv_timer_start(
        handle_.get(), [](uv_timer_t* t) { static_cast<CallbackTimer*>(t->data)->callback_(); },
        delayMs, 0);
  }
  void stop() { uv_timer_stop(handle_.get()); }

 private:
  std::function<void()> callback_;
  UvHandle<uv_timer_t> handle_;
};

}  // namespace kvr::net::testing
