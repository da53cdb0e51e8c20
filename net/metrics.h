// Prometheus metric primitives and the text exposition format (version 0.0.4).
//
// Deliberately small: a Counter, a Histogram with fixed buckets chosen at compile time,
// and a writer for the text format. No registry, no dynamic label sets: the node keeps
// its metrics in plain members (net/node_metrics.h) and renders them on each scrape.
// Gauges are not stored at all; they are read from the node's state when rendering.
//
// Counters and histograms are updated with relaxed atomics, so the WAL writer on the
// thread pool may record while the loop thread renders. A histogram keeps one count per
// bucket (not cumulative) and derives `_count` from their sum when rendering, so a scrape
// always shows `_count` equal to the `+Inf` bucket even while another thread observes.
#pragma once

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

namespace kvr::net::metrics {

class Counter {
 public:
  void inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// Bucket upper bounds (strictly increasing, finite), shared by every histogram of a kind.
constexpr size_t kMaxBuckets = 24;

// Durations from 100 µs to ~26 s, doubling (fsync, snapshot saves).
inline constexpr double kDiskSecondsBuckets[] = {0.0001, 0.0002, 0.0004,  0.0008, 0.0016,
                                                 0.0032, 0.0064, 0.0128,  0.0256, 0.0512,
                                                 0.1024, 0.2048, 0.4096,  0.8192, 1.6384,
                                                 3.2768, 6.5536, 13.1072, 26.2144};
// Durations from 100 µs to ~6.5 s, doubling (client requests, peer round trips).
inline constexpr double kRequestSecondsBuckets[] = {0.0001, 0.0002, 0.0004, 0.0008, 0.0016,
                                                    0.0032, 0.0064, 0.0128, 0.0256, 0.0512,
                                                    0.1024, 0.2048, 0.4096, 0.8192, 1.6384,
                                                    3.2768, 6.5536};

// CLOCK_MONOTONIC in nanoseconds, for measuring durations.
uint64_t monotonicNanos();

class Histogram {
 public:
  // `bounds` must outlive the histogram (use the constants below) and hold at most
  // kMaxBuckets strictly increasing values.
  explicit Histogram(std::span<const double> bounds = kRequestSecondsBuckets);

  void observe(double value);
  std::span<const double> bounds() const { return bounds_; }
  // Observations <= bounds()[i], for i < bounds().size(); index bounds().size() is +Inf.
  uint64_t cumulative(size_t i) const;
  uint64_t count() const { return cumulative(bounds_.size()); }
  // Reads every bucket once: out[i] = observations in bucket i (not cumulative).
  void load(uint64_t (&out)[kMaxBuckets + 1]) const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::span<const double> bounds_;
  std::atomic<uint64_t> buckets_[kMaxBuckets + 1] = {};  // not cumulative; last is +Inf
  std::atomic<double> sum_{0};
};

// One label: name="value". Values are escaped when written.
struct Label {
  std::string_view name;
  std::string_view value;
};

// Builds an exposition document. For each metric call family() once, then its samples.
class Writer {
 public:
  enum class Type { Counter, Gauge, Histogram };

  // "# HELP name help" and "# TYPE name type".
  void family(std::string_view name, Type type, std::string_view help);
  // "name{labels} value". Integers are written exactly; other values with up to 17
  // significant digits; infinities as +Inf/-Inf.
  void sample(std::string_view name, std::initializer_list<Label> labels, double value);
  void sample(std::string_view name, std::initializer_list<Label> labels, uint64_t value);
  void sample(std::string_view name, double value) { sample(name, {}, value); }
  void sample(std::string_view name, uint64_t value) { sample(name, {}, value); }
  // name_bucket{labels,le="..."} (cumulative, ending with +Inf), name_sum, name_count.
  void histogram(std::string_view name, std::initializer_list<Label> labels,
                 const Histogram& h);

  const std::string& text() const { return out_; }
  std::string take() { return std::move(out_); }

 private:
  void labels(std::initializer_list<Label> labels, const Label* extra);
  std::string out_;
};

// The content type of the text format.
constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

// Formats a sample value the way the text format expects ("+Inf", "NaN", "12", "0.25").
std::string formatValue(double value);
// Escapes a label value (backslash, double quote, newline).
std::string escapeLabelValue(std::string_view value);

}  // namespace kvr::net::metrics
