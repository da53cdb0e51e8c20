// kj promises, kj timers and cross-thread wake-ups on a libuv loop.
#include <gtest/gtest.h>

#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <kj/async.h>
#include <kj/debug.h>
#include <kj/function.h>

#include "net/uv_event_port.h"
#include "tests/net/uv_loop_fixture.h"

namespace kvr::net {
namespace {

using testing::CallbackTimer;
using EventPortTest = testing::UvLoopTest;

TEST_F(EventPortTest, PromiseQueuedAtTopLevelRunsUnderUvRun) {
  UvEventPort port(loop());
  bool ran = false;
  auto promise = kj::evalLater([&]() { ran = true; }).eagerlyEvaluate(nullptr);
  EXPECT_FALSE(ran);
  uv_run(loop(), UV_RUN_DEFAULT);  // kj's queued work keeps the uv loop alive
  EXPECT_TRUE(ran);
}

TEST_F(EventPortTest, PromiseChainStartedInUvCallbackRuns) {
  UvEventPort port(loop());
  std::vector<int> steps;
  kj::Maybe<kj::Promise<void>> chain;
  CallbackTimer starter(loop(), [&]() {
    chain = kj::evalLater([&]() { steps.push_back(1); })
                .then([&]() {
                  steps.push_back(2);
                  return kj::evalLater([]() { return 3; });
                })
                .then([&](int v) { steps.push_back(v); })
                .eagerlyEvaluate(nullptr);
  });
  starter.start(1);
  uv_run(loop(), UV_RUN_DEFAULT);
  EXPECT_EQ(steps, (std::vector<int>{1, 2, 3}));
}

TEST_F(EventPortTest, WaitAtTopLevelReturnsValue) {
  UvEventPort port(loop());
  int value = kj::evalLater([]() {
                return 41;
              }).then([](int v) {
                  return v + 1;
                }).wait(port.waitScope());
  EXPECT_EQ(value, 42);
}

TEST_F(EventPortTest, KjTimerWaitTakesAtLeastItsDelay) {
  UvEventPort port(loop());
  uint64_t start = uv_hrtime();
  port.timer().afterDelay(30 * kj::MILLISECONDS).wait(port.waitScope());
  EXPECT_GE(msSince(start), 29.0);
  EXPECT_LT(msSince(start), 1000.0);
}

TEST_F(EventPortTest, TimerDueBeforeWaitDoesNotBlock) {
  // The kj timer fires in the timers phase of wait()'s uv_run, before libuv polls; the
  // poll must not then block with kj work pending.
  UvEventPort port(loop());
  auto timer = port.timer().afterDelay(5 * kj::MILLISECONDS);
  uv_sleep(20);
  std::atomic<bool> done{false};
  std::thread watchdog([&]() {  // ends a hang so the test fails instead of timing out
    for (int i = 0; i < 300 && !done; ++i) uv_sleep(10);
    if (!done) port.wake();
  });
  uint64_t start = uv_hrtime();
  timer.wait(port.waitScope());
  done = true;
  watchdog.join();
  EXPECT_LT(msSince(start), 1000.0);
}

TEST_F(EventPortTest, KjTimerInterleavesWithUvTimers) {
  UvEventPort port(loop());
  std::vector<std::string> order;
  uint64_t start = uv_hrtime();
  double kjFiredAtMs = 0;
  CallbackTimer early(loop(), [&]() { order.push_back("uv10"); });
  CallbackTimer late(loop(), [&]() { order.push_back("uv60"); });
  early.start(10);
  late.start(60);
  auto kjTimer = port.timer()
                     .afterDelay(35 * kj::MILLISECONDS)
                     .then([&]() {
                       order.push_back("kj35");
                       kjFiredAtMs = msSince(start);
                     })
                     .eagerlyEvaluate(nullptr);
  uv_run(loop(), UV_RUN_DEFAULT);
  EXPECT_EQ(order, (std::vector<std::string>{"uv10", "kj35", "uv60"}));
  EXPECT_GE(kjFiredAtMs, 34.0);
}

TEST_F(EventPortTest, KjTimerSetInLateUvCallbackCountsFromThen) {
  // The loop blocks 50 ms before the callback; a timer set there must count from the
  // callback's time, not from when kj last looked at the clock.
  UvEventPort port(loop());
  uint64_t start = uv_hrtime();
  double firedAtMs = 0;
  kj::Maybe<kj::Promise<void>> kjTimer;
  CallbackTimer starter(loop(), [&]() {
    kjTimer = port.timer()
                  .afterDelay(40 * kj::MILLISECONDS)
                  .then([&]() { firedAtMs = msSince(start); })
                  .eagerlyEvaluate(nullptr);
  });
  starter.start(50);
  uv_run(loop(), UV_RUN_DEFAULT);
  EXPECT_GE(firedAtMs, 89.0);
}

TEST_F(EventPortTest, CancelledKjTimerDoesNotKeepLoopAlive) {
  UvEventPort port(loop());
  {
    auto forgotten = port.timer().afterDelay(5 * kj::SECONDS);
    kj::evalLater([]() {}).wait(port.waitScope());  // arms the uv timer for it
  }
  uint64_t start = uv_hrtime();
  uv_run(loop(), UV_RUN_DEFAULT);
  EXPECT_LT(msSince(start), 1000.0);
}

TEST_F(EventPortTest, BusyKjWorkDoesNotStarveUvTimers) {
  UvEventPort port(loop());
  bool timerFired = false;
  int iterations = 0;
  constexpr int kLimit = 200000;
  CallbackTimer timer(loop(), [&]() { timerFired = true; });
  timer.start(2);
  kj::Function<kj::Promise<void>()> spin = [&]() -> kj::Promise<void> {
    if (timerFired || ++iterations >= kLimit) return kj::READY_NOW;
    return kj::evalLater([&]() { return spin(); });
  };
  auto busy = spin().eagerlyEvaluate(nullptr);
  uv_run(loop(), UV_RUN_DEFAULT);
  EXPECT_TRUE(timerFired);
  EXPECT_LT(iterations, kLimit) << "the uv timer only fired after kj ran out of work";
}

TEST_F(EventPortTest, CrossThreadFulfillerWakesWait) {
  UvEventPort port(loop());
  auto paf = kj::newPromiseAndCrossThreadFulfiller<int>();
  std::thread other([&]() {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    paf.fulfiller->fulfill(42);
  });
  EXPECT_EQ(paf.promise.wait(port.waitScope()), 42);
  other.join();
}

TEST_F(EventPortTest, CrossThreadFulfillerWakesUvRun) {
  UvEventPort port(loop());
  auto paf = kj::newPromiseAndCrossThreadFulfiller<int>();
  CallbackTimer keepAlive(loop(), []() { ADD_FAILURE() << "cross-thread wake-up never ran"; });
  keepAlive.start(10000);
  int got = 0;
  auto done = paf.promise
                  .then([&](int v) {
                    got = v;
                    keepAlive.stop();
                  })
                  .eagerlyEvaluate(nullptr);
  std::thread other([&]() {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    paf.fulfiller->fulfill(7);
  });
  uv_run(loop(), UV_RUN_DEFAULT);
  other.join();
  EXPECT_EQ(got, 7);
}

TEST_F(EventPortTest, ExecutorRunsFunctionOnLoopThread) {
  UvEventPort port(loop());
  const kj::Executor& executor = kj::getCurrentThreadExecutor();
  CallbackTimer keepAlive(loop(), []() { ADD_FAILURE() << "executeSync never ran"; });
  keepAlive.start(10000);
  std::thread::id loopThread = std::this_thread::get_id();
  std::thread::id ranOn;
  int result = 0;
  std::thread other([&]() {
    result = executor.executeSync([&]() {
      ranOn = std::this_thread::get_id();
      keepAlive.stop();
      return 5;
    });
  });
  uv_run(loop(), UV_RUN_DEFAULT);
  other.join();
  EXPECT_EQ(result, 5);
  EXPECT_EQ(ranOn, loopThread);
}

double threadCpuMs() {
  struct rusage usage;
  getrusage(RUSAGE_THREAD, &usage);
  return usage.ru_utime.tv_sec * 1e3 + usage.ru_utime.tv_usec / 1e3 +
         usage.ru_stime.tv_sec * 1e3 + usage.ru_stime.tv_usec / 1e3;
}

TEST_F(EventPortTest, WakeFromOtherThreadEndsWait) {
  UvEventPort port(loop());
  std::thread other([&]() {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    port.wake();
  });
  uint64_t start = uv_hrtime();
  double cpuBefore = threadCpuMs();
  // Nothing else is pending: only wake() can end this wait, and it reports the wake-up.
  bool woken = port.wait();
  while (!woken) woken = port.wait();
  EXPECT_GE(msSince(start), 95.0);
  EXPECT_LT(threadCpuMs() - cpuBefore, 50.0) << "wait() spun instead of sleeping";
  other.join();
  EXPECT_FALSE(port.poll()) << "a wake-up is reported once";
}

TEST_F(EventPortTest, WaitInCallbackRunFromUvIsRejected) {
  // Under uv_run a nested wait() would re-enter libuv; it must fail instead.
  UvEventPort port(loop());
  kj::Maybe<kj::Exception> caught;
  auto outer = kj::evalLater([&]() {
                 caught = kj::runCatchingExceptions([&]() {
                   port.timer().afterDelay(kj::MILLISECONDS).wait(port.waitScope());
                 });
               }).eagerlyEvaluate(nullptr);
  uv_run(loop(), UV_RUN_DEFAULT);
  // Rejected by kj ("not allowed from within event callbacks") or by the port.
  if (caught == nullptr) {
    ADD_FAILURE() << "nested wait() was allowed inside uv_run";
  }
}

}  // namespace
}  // namespace kvr::net
