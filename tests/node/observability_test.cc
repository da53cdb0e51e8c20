// The metric primitives and exposition writer (net/metrics.h) and the log line format
// (net/log.h).
#include <gtest/gtest.h>

#include <cmath>

#include "net/log.h"
#include "net/metrics.h"

namespace kvr::net {
namespace {

TEST(Metrics, FormatValue) {
  EXPECT_EQ(metrics::formatValue(0), "0");
  EXPECT_EQ(metrics::formatValue(12), "12");
  EXPECT_EQ(metrics::formatValue(0.25), "0.25");
  EXPECT_EQ(metrics::formatValue(0.0001), "0.0001");
  EXPECT_EQ(metrics::formatValue(1.0 / 0.0), "+Inf");
  EXPECT_EQ(metrics::formatValue(-1.0 / 0.0), "-Inf");
  EXPECT_EQ(metrics::formatValue(std::nan("")), "NaN");
}

TEST(Metrics, LabelValuesAreEscaped) {
  EXPECT_EQ(metrics::escapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

TEST(Metrics, HistogramIsCumulativeAndEndsWithInf) {
  static constexpr double kBounds[] = {0.1, 1};
  metrics::Histogram h(kBounds);
  h.observe(0.05);
  h.observe(0.1);  // on the bound: le="0.1"
  h.observe(0.5);
  h.observe(7);
  metrics::Writer w;
  w.family("x_seconds", metrics::Writer::Type::Histogram, "help");
  w.histogram("x_seconds", {{"op", "put"}}, h);
  EXPECT_EQ(w.text(), "# HELP x_seconds help\n"
                      "# TYPE x_seconds histogram\n"
                      "x_seconds_bucket{op=\"put\",le=\"0.1\"} 2\n"
                      "x_seconds_bucket{op=\"put\",le=\"1\"} 3\n"
                      "x_seconds_bucket{op=\"put\",le=\"+Inf\"} 4\n"
                      "x_seconds_sum{op=\"put\"} 7.65\n"
                      "x_seconds_count{op=\"put\"} 4\n");
  EXPECT_EQ(h.count(), 4u);
}

TEST(Metrics, SamplesAndCounters) {
  metrics::Counter c;
  c.inc();
  c.inc(4);
  metrics::Writer w;
  w.family("a_total", metrics::Writer::Type::Counter, "line\\one\nline two");
  w.sample("a_total", c.value());
  w.sample("b", {{"role", "leader"}, {"x", "y"}}, 0.5);
  EXPECT_EQ(w.text(), "# HELP a_total line\\\\one\\nline two\n"
                      "# TYPE a_total counter\n"
                      "a_total 5\n"
                      "b{role=\"leader\",x=\"y\"} 0.5\n");
}

TEST(Log, TextLine) {
  // 2024-05-01T12:00:00.123Z
  int64_t ms = 1714564800123;
  EXPECT_EQ(formatLogLine(LogFormat::Text, ms, LogLevel::Info, 2, 5, "became leader"),
            "2024-05-01T12:00:00.123Z info kvnode 2 term 5: became leader");
  EXPECT_EQ(formatLogLine(LogFormat::Text, ms, LogLevel::Error, 3, std::nullopt, "a\nb"),
            "2024-05-01T12:00:00.123Z error kvnode 3: a b");
}

TEST(Log, JsonLine) {
  int64_t ms = 1714564800007;
  EXPECT_EQ(formatLogLine(LogFormat::Json, ms, LogLevel::Warn, 1, 7, "peer 2 down: \"x\"\n"),
            "{\"ts\":\"2024-05-01T12:00:00.007Z\",\"level\":\"warn\",\"node\":1,\"term\":7,"
            "\"msg\":\"peer 2 down: \\\"x\\\"\\n\"}");
  EXPECT_EQ(formatLogLine(LogFormat::Json, ms, LogLevel::Info, 1, std::nullopt, "x"),
            "{\"ts\":\"2024-05-01T12:00:00.007Z\",\"level\":\"info\",\"node\":1,\"term\":null,"
            "\"msg\":\"x\"}");
}

TEST(Log, JsonStringKeepsUtf8AndReplacesInvalidBytes) {
  EXPECT_EQ(jsonString("caf\xc3\xa9"), "\"caf\xc3\xa9\"");
  EXPECT_EQ(jsonString("a\xff"
                       "b\x01"),
            "\"a\\ufffdb\\u0001\"");
  EXPECT_EQ(jsonString("\xe2\x82"), "\"\\ufffd\\ufffd\"");  // truncated sequence
}

TEST(Log, ParseFormat) {
  LogFormat f = LogFormat::Text;
  EXPECT_TRUE(parseLogFormat("json", &f));
  EXPECT_EQ(f, LogFormat::Json);
  EXPECT_TRUE(parseLogFormat("text", &f));
  EXPECT_EQ(f, LogFormat::Text);
  EXPECT_FALSE(parseLogFormat("JSON", &f));
}

TEST(Log, ComponentLevels) {
  EXPECT_EQ(componentLineLevel("peer 2 up"), LogLevel::Info);
  EXPECT_EQ(componentLineLevel("peer 2 down: connection refused"), LogLevel::Warn);
  EXPECT_EQ(componentLineLevel("peer 3 refused our connection: wrong cluster"), LogLevel::Warn);
  EXPECT_EQ(componentLineLevel("refusing peer connection: cluster id 1 ..."), LogLevel::Warn);
  EXPECT_EQ(componentLineLevel("dropped a peer message: bad"), LogLevel::Warn);
}

}  // namespace
}  // namespace kvr::net
