// The totals of a kvsim seed range: accumulated run by run in seed order, printed as
// the two text lines and the --json object, parsed back from that object, and merged
// over shards (kvsim --merge) so that N shards give the summary of one run over all
// their seeds.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "sim/scenario.h"
#include "sim/world.h"

namespace kvr::sim {

struct Summary {
  uint64_t seedsFrom = 0, seedsTo = 0;  // the seed range covered (runs = to - from + 1)
  uint64_t runs = 0, failures = 0;
  uint64_t simNs = 0, events = 0, messages = 0, transfers = 0, memberChanges = 0;
  // XOR of the per-seed trace hashes; combined in seed order all the same, so that a
  // later switch to an order-dependent combination stays deterministic.
  uint64_t traceHash = 0;
  std::array<uint64_t, kFaultCount> faults{};
  std::array<uint64_t, kProbeCount> probeSeeds{};  // seeds whose run hit each probe
  std::string firstFailure;  // "<property> seed <S>" of the lowest failing seed, or ""
  // The flags that pinned the scenarios (pinFlags, plus " --mem-store"); shards can
  // only be merged when they agree.
  std::string pins;
  double wallSeconds = 0;  // elapsed; for a merge, the sum over the shards

  // Adds the run of `seed`; seeds must come in increasing order.
  void add(uint64_t seed, const RunResult& r);

  // The text lines (totals, faults, probes), each ending in '\n'.
  std::string text() const;
  // The --json object, one line without the '\n'. Keys: runs, failures, sim_seconds,
  // events, messages, wall_seconds, events_per_second, seeds_per_minute, acceleration,
  // trace_hash, first_failure, faults{...,transfer}, probes{...}, seeds_from, seeds_to,
  // sim_ns, pins.
  std::string json() const;

  // Parses a --json object (surrounding whitespace allowed). False, with a reason in
  // *error, if it is not a complete kvsim summary.
  static bool parse(const std::string& text, Summary* out, std::string* error);

  // Required probes no seed reached, comma-separated ("" when every one was hit).
  std::string missedProbes() const;
};

struct NamedSummary {
  std::string name;  // where it came from, for error messages
  Summary summary;
};

// Merges shards as if one run had covered all their seeds: counts summed, hashes
// combined in seed order, first_failure from the lowest failing seed, wall time summed.
// Refuses (false, reason in *error) overlapping or non-adjacent seed ranges and shards
// with different pinned flags. The inputs may come in any order.
bool mergeSummaries(std::vector<NamedSummary> shards, Summary* out, std::string* error);

// The summary object of a kvsim output: the whole text if it is one JSON object,
// otherwise its last non-empty line.
std::string summaryObjectOf(const std::string& fileText);

}  // namespace kvr::sim
