// runOnPool: blocking work on libuv's thread pool, results and errors back as promises.
#include <gtest/gtest.h>

#include <cstring>
#include <stdexcept>
#include <thread>

#include <kj/async.h>
#include <kj/debug.h>

#include "net/run_on_pool.h"
#include "net/uv_event_port.h"
#include "tests/net/uv_loop_fixture.h"

namespace kvr::net {
namespace {

using PoolTest = testing::UvLoopTest;

TEST_F(PoolTest, ReturnsValueComputedOnAnotherThread) {
  UvEventPort port(loop());
  std::thread::id loopThread = std::this_thread::get_id();
  std::thread::id workThread;
  int value = runOnPool(loop(), [&]() {
                workThread = std::this_thread::get_id();
                return 6 * 7;
              }).wait(port.waitScope());
  EXPECT_EQ(value, 42);
  EXPECT_NE(workThread, loopThread);
}

TEST_F(PoolTest, VoidWork) {
  UvEventPort port(loop());
  std::atomic<bool> ran{false};
  runOnPool(loop(), [&]() { ran = true; }).wait(port.waitScope());
  EXPECT_TRUE(ran);
}

TEST_F(PoolTest, KjExceptionPropagates) {
  UvEventPort port(loop());
  auto failing = runOnPool(loop(), []() -> int { KJ_FAIL_REQUIRE("disk on fire"); });
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { failing.wait(port.waitScope()); })) {
    EXPECT_TRUE(strstr(e->getDescription().cStr(), "disk on fire") != nullptr)
        << e->getDescription().cStr();
  } else {
    ADD_FAILURE() << "exception was lost";
  }
}

TEST_F(PoolTest, StdExceptionPropagates) {
  UvEventPort port(loop());
  auto failing = runOnPool(loop(), []() { throw std::runtime_error("fsync failed: EIO"); });
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { failing.wait(port.waitScope()); })) {
    EXPECT_TRUE(strstr(e->getDescription().cStr(), "fsync failed: EIO") != nullptr)
        << e->getDescription().cStr();
  } else {
    ADD_FAILURE() << "exception was lost";
  }
}

TEST_F(PoolTest, ManyJobsAllComplete) {
  UvEventPort port(loop());
  constexpr int kJobs = 200;
  auto jobs = kj::heapArrayBuilder<kj::Promise<int>>(kJobs);
  for (int i = 0; i < kJobs; ++i) jobs.add(runOnPool(loop(), [i]() { return i * i; }));
  auto results = kj::joinPromises(jobs.finish()).wait(port.waitScope());
  for (int i = 0; i < kJobs; ++i) EXPECT_EQ(results[i], i * i);
}

TEST_F(PoolTest, CompletionRunsUnderUvRun) {
  UvEventPort port(loop());
  int got = 0;
  auto done = runOnPool(loop(), []() {
                return 9;
              }).then([&](int v) {
                  got = v;
                }).eagerlyEvaluate(nullptr);
  uv_run(loop(), UV_RUN_DEFAULT);  // the queued work keeps the loop alive
  EXPECT_EQ(got, 9);
}

TEST_F(PoolTest, DroppedPromiseDiscardsResult) {
  UvEventPort port(loop());
  std::atomic<bool> ran{false};
  {
    auto dropped = runOnPool(loop(), [&]() {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      ran = true;
      return 1;
    });
  }
  uv_run(loop(), UV_RUN_DEFAULT);
  EXPECT_TRUE(ran);
}

}  // namespace
}  // namespace kvr::net
