#include "sim/timeline.h"

#include <kj/debug.h>

#include <utility>

namespace kvr::sim {

Timeline::Timeline(uint32_t nodes) : nodes_(nodes), current_(nodes), since_(nodes, 0) {}

void Timeline::observe(uint64_t nowNs, const std::vector<NodeLook>& looks,
                       const std::vector<std::vector<bool>>& blocked) {
  KJ_REQUIRE(looks.size() == nodes_);
  for (uint32_t i = 0; i < nodes_; ++i) {
    if (looks[i] == current_[i]) continue;
    if (nowNs > since_[i]) {
      if (spans_.size() < kMaxSpans)
        spans_.push_back(Span{i + 1, since_[i], nowNs, current_[i]});
      else truncated_ = true;
    }
    current_[i] = looks[i];
    since_[i] = nowNs;
  }
  // blocked is indexed by node id (row and column 0 unused).
  std::string links;
  for (uint32_t a = 1; a < blocked.size(); ++a) {
    for (uint32_t b = 1; b < blocked[a].size(); ++b) {
      if (!blocked[a][b]) continue;
      if (!links.empty()) links += ' ';
      links += std::to_string(a) + ">" + std::to_string(b);
    }
  }
  if (links != cutLinks_) {
    if (!cutLinks_.empty() && nowNs > cutSince_)
      cuts_.push_back(Cut{cutSince_, nowNs, cutLinks_});
    cutLinks_ = std::move(links);
    cutSince_ = nowNs;
  }
}

void Timeline::mark(uint64_t nowNs, std::string what) {
  if (marks_.size() < kMaxMarks) marks_.push_back(Mark{nowNs, std::move(what)});
  else truncated_ = true;
}

void Timeline::violation(uint64_t nowNs, std::string property, std::string detail) {
  if (failed_) return;
  failed_ = true;
  violationNs_ = nowNs;
  property_ = std::move(property);
  detail_ = std::move(detail);
}

void Timeline::finish(uint64_t nowNs) {
  endNs_ = nowNs;
  for (uint32_t i = 0; i < nodes_; ++i) {
    if (nowNs > since_[i]) spans_.push_back(Span{i + 1, since_[i], nowNs, current_[i]});
    since_[i] = nowNs;
  }
  if (!cutLinks_.empty() && nowNs > cutSince_)
    cuts_.push_back(Cut{cutSince_, nowNs, cutLinks_});
  cutLinks_.clear();
}

}  // namespace kvr::sim
