#include "net/metrics.h"

#include <time.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <kj/debug.h>

namespace kvr::net::metrics {
namespace {

const char* typeName(Writer::Type type) {
  switch (type) {
    case Writer::Type::Counter: return "counter";
    case Writer::Type::Gauge: return "gauge";
    case Writer::Type::Histogram: return "histogram";
  }
  return "untyped";
}

}  // namespace

uint64_t monotonicNanos() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000u + uint64_t(ts.tv_nsec);
}

Histogram::Histogram(std::span<const double> bounds) : bounds_(bounds) {
  KJ_REQUIRE(bounds.size() <= kMaxBuckets, "too many histogram buckets", bounds.size());
  for (size_t i = 1; i < bounds.size(); ++i) {
    KJ_REQUIRE(bounds[i - 1] < bounds[i], "histogram bounds must increase");
  }
}

void Histogram::observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

uint64_t Histogram::cumulative(size_t upTo) const {
  uint64_t total = 0;
  for (size_t i = 0; i <= upTo && i <= bounds_.size(); ++i) {
    total += buckets_[i].load(std::memory_order_relaxed);
  }
  return total;
}

void Histogram::load(uint64_t (&out)[kMaxBuckets + 1]) const {
  for (size_t i = 0; i <= bounds_.size(); ++i)
    out[i] = buckets_[i].load(std::memory_order_relaxed);
}

std::string formatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.0f", value);
    return buf;
  }
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.17g", value);
  // Prefer the shortest form that reads back the same.
  for (int digits = 1; digits < 17; ++digits) {
    char shorter[40];
    std::snprintf(shorter, sizeof(shorter), "%.*g", digits, value);
    if (std::strtod(shorter, nullptr) == value) return shorter;
  }
  return buf;
}

std::string escapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

void Writer::family(std::string_view name, Type type, std::string_view help) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  for (char c : help) {  // HELP escapes backslash and newline
    if (c == '\\') {
      out_ += "\\\\";
    } else if (c == '\n') {
      out_ += "\\n";
    } else {
      out_ += c;
    }
  }
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += typeName(type);
  out_ += '\n';
}

void Writer::labels(std::initializer_list<Label> labels, const Label* extra) {
  if (labels.size() == 0 && extra == nullptr) return;
  out_ += '{';
  bool first = true;
  auto one = [&](const Label& l) {
    if (!first) out_ += ',';
    first = false;
    out_ += l.name;
    out_ += "=\"";
    out_ += escapeLabelValue(l.value);
    out_ += '"';
  };
  for (const Label& l : labels) one(l);
  if (extra != nullptr) one(*extra);
  out_ += '}';
}

void Writer::sample(std::string_view name, std::initializer_list<Label> labels, double value) {
  out_ += name;
  this->labels(labels, nullptr);
  out_ += ' ';
  out_ += formatValue(value);
  out_ += '\n';
}

void Writer::sample(std::string_view name, std::initializer_list<Label> labels,
                    uint64_t value) {
  out_ += name;
  this->labels(labels, nullptr);
  out_ += ' ';
  out_ += std::to_string(value);
  out_ += '\n';
}

void Writer::histogram(std::string_view name, std::initializer_list<Label> labels,
                       const Histogram& h) {
  std::string bucket = std::string(name) + "_bucket";
  uint64_t counts[kMaxBuckets + 1];
  h.load(counts);  // one read of each bucket: the +Inf bucket and _count agree
  uint64_t cumulative = 0;
  auto bounds = h.bounds();
  for (size_t i = 0; i <= bounds.size(); ++i) {
    cumulative += counts[i];
    std::string le = i < bounds.size() ? formatValue(bounds[i]) : std::string("+Inf");
    Label extra{"le", le};
    out_ += bucket;
    this->labels(labels, &extra);
    out_ += ' ';
    out_ += std::to_string(cumulative);
    out_ += '\n';
  }
  out_ += name;
  out_ += "_sum";
  this->labels(labels, nullptr);
  out_ += ' ';
  out_ += formatValue(h.sum());
  out_ += '\n';
  out_ += name;
  out_ += "_count";
  this->labels(labels, nullptr);
  out_ += ' ';
  out_ += std::to_string(cumulative);
  out_ += '\n';
}

}  // namespace kvr::net::metrics
