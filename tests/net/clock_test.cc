#include <gtest/gtest.h>

#include "net/clock.h"
#include "tests/net/uv_loop_fixture.h"

namespace kvr::net {
namespace {

TEST(TickSchedule, CountsWholeIntervals) {
  TickSchedule s(1000, 100, 5);
  EXPECT_EQ(s.ticksDue(1050), 0u);
  EXPECT_EQ(s.ticksDue(1100), 1u);
  EXPECT_EQ(s.nextDueMs(), 1200u);
  EXPECT_EQ(s.ticksDue(1199), 0u);
  EXPECT_EQ(s.ticksDue(1450), 3u);  // 1200, 1300, 1400
  EXPECT_EQ(s.nextDueMs(), 1500u);
}

TEST(TickSchedule, LongStallIsCappedAndRestartsFromNow) {
  TickSchedule s(0, 100, 5);
  EXPECT_EQ(s.ticksDue(10'000), 5u);
  EXPECT_EQ(s.nextDueMs(), 10'100u);
  EXPECT_EQ(s.ticksDue(10'100), 1u);
}

using LoopClockTest = testing::UvLoopTest;

TEST_F(LoopClockTest, LoopTimeIsCachedPreciseTimeIsNot) {
  LoopClock clock(loop());
  uint64_t loopBefore = clock.nowMs();
  uint64_t preciseBefore = LoopClock::preciseNowNs();
  uv_sleep(20);
  EXPECT_EQ(clock.nowMs(), loopBefore);
  EXPECT_GE(LoopClock::preciseNowNs() - preciseBefore, 19'000'000u);
  uv_update_time(loop());
  EXPECT_GE(clock.nowMs() - loopBefore, 19u);
}

}  // namespace
}  // namespace kvr::net
