// A run drawn for people: what each node was (role, term, down, paused, slow clock), who
// could reach whom, which faults struck, and every client operation, over simulated
// time. World records it (RunOptions::timelinePath); renderTimelineHtml writes one
// self-contained page (inline SVG drawn by a small script, nothing fetched).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/types.h"
#include "sim/history.h"

namespace kvr::sim {

// What a node is at one moment, as the timeline shows it.
struct NodeLook {
  enum State : uint8_t { Down, Dead, Follower, PreCandidate, Candidate, Leader };
  State state = Down;
  Term term = 0;
  bool paused = false;
  uint32_t driftPermille = 1000;  // its clock's speed; 1000 = true time
  bool operator==(const NodeLook&) const = default;
};

class Timeline {
 public:
  // A stretch of time over which a node looked the same.
  struct Span {
    uint32_t node = 0;
    uint64_t fromNs = 0, toNs = 0;
    NodeLook look;
  };
  // A stretch of time over which the same links were cut ("a>b" pairs; empty: none).
  struct Cut {
    uint64_t fromNs = 0, toNs = 0;
    std::string links;
  };
  struct Mark {
    uint64_t atNs = 0;
    std::string what;
  };

  // Far more than a run draws: a page past these would not open anyway.
  static constexpr size_t kMaxSpans = 200'000;
  static constexpr size_t kMaxMarks = 100'000;

  explicit Timeline(uint32_t nodes);

  // Called after every event: records what changed since the last call.
  void observe(uint64_t nowNs, const std::vector<NodeLook>& looks,
               const std::vector<std::vector<bool>>& blocked);
  void mark(uint64_t nowNs, std::string what);
  void violation(uint64_t nowNs, std::string property, std::string detail);
  // Closes the open spans at the end of the run.
  void finish(uint64_t nowNs);

  uint32_t nodes() const { return nodes_; }
  const std::vector<Span>& spans() const { return spans_; }
  const std::vector<Cut>& cuts() const { return cuts_; }
  const std::vector<Mark>& marks() const { return marks_; }
  uint64_t endNs() const { return endNs_; }
  bool failed() const { return failed_; }
  uint64_t violationNs() const { return violationNs_; }
  const std::string& property() const { return property_; }
  const std::string& detail() const { return detail_; }
  bool truncated() const { return truncated_; }

 private:
  uint32_t nodes_;
  std::vector<NodeLook> current_;
  std::vector<uint64_t> since_;  // when each node's current look began
  std::string cutLinks_;
  uint64_t cutSince_ = 0;
  std::vector<Span> spans_;
  std::vector<Cut> cuts_;
  std::vector<Mark> marks_;
  uint64_t endNs_ = 0;
  bool failed_ = false;
  uint64_t violationNs_ = 0;
  std::string property_, detail_;
  bool truncated_ = false;
};

// The page: the scenario line as its title, the run as lanes, the client operations of
// `history`, and the violation (marked, its detail shown, its operations outlined).
std::string renderTimelineHtml(const Timeline& timeline, const History& history,
                               const std::string& scenario);

}  // namespace kvr::sim
