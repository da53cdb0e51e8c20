// kvsim: runs seeded chaos simulations of the cluster and checks them.
//
//   kvsim --seed S                 one run
//   kvsim --seeds A..B             many runs, with a progress line and a summary
//   kvsim ... --nodes N --clients C --ops K --faults all|none|LIST
//   kvsim --seed S --trace FILE --history FILE
//   kvsim ... --json               the summary as one JSON object on the last line
//   kvsim --seed S --shrink        minimize a failing scenario
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "sim/shrink.h"
#include "sim/world.h"

using kvr::sim::Fault;
using kvr::sim::kFaultCount;
using kvr::sim::RunOptions;
using kvr::sim::RunResult;
using kvr::sim::Scenario;
using kvr::sim::ScenarioPins;

namespace {

[[noreturn]] void usage(const char* error) {
  if (error != nullptr) fprintf(stderr, "kvsim: %s\n", error);
  fprintf(stderr,
          "usage: kvsim (--seed S | --seeds A..B) [--nodes N] [--clients C] [--ops K] [--keys N]\n"
          "             [--faults all|none|LIST] [--trace FILE] [--history FILE]\n"
          "             [--json] [--shrink] [--quiet]\n"
          "faults: drop delay reorder duplicate partition crash pause clock_drift\n"
          "        torn_write bit_flip fsync_error slow_fsync client_loss\n");
  exit(2);
}

uint64_t parseU64(const char* flag, const char* text) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0') {
    fprintf(stderr, "kvsim: %s wants a number, got '%s'\n", flag, text);
    exit(2);
  }
  return v;
}


}  // namespace

int main(int argc, char** argv) {
  uint64_t first = 0, last = 0;
  bool haveSeed = false, json = false, shrink = false, quiet = false;
  ScenarioPins pins;
  RunOptions opts;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) usage((a + " needs a value").c_str());
      return argv[++i];
    };
    if (a == "--seed") {
      first = last = parseU64("--seed", next());
      haveSeed = true;
    } else if (a == "--seeds") {
      std::string r = next();
      size_t dots = r.find("..");
      if (dots == std::string::npos) usage("--seeds wants A..B");
      first = parseU64("--seeds", r.substr(0, dots).c_str());
      last = parseU64("--seeds", r.substr(dots + 2).c_str());
      if (last < first) usage("--seeds wants A <= B");
      haveSeed = true;
    } else if (a == "--nodes") {
      pins.nodes = static_cast<uint32_t>(parseU64("--nodes", next()));
      if (*pins.nodes < 1 || *pins.nodes > 7) usage("--nodes must be 1..7");
    } else if (a == "--clients") {
      pins.clients = static_cast<uint32_t>(parseU64("--clients", next()));
      if (*pins.clients < 1 || *pins.clients > 256) usage("--clients must be 1..256");
    } else if (a == "--ops") {
      pins.ops = static_cast<uint32_t>(parseU64("--ops", next()));
      if (*pins.ops < 1 || *pins.ops > 1'000'000) usage("--ops must be 1..1000000");
    } else if (a == "--keys") {
      pins.keys = static_cast<uint32_t>(parseU64("--keys", next()));
      if (*pins.keys < 1 || *pins.keys > 100'000) usage("--keys must be 1..100000");
    } else if (a == "--faults") {
      kvr::sim::FaultSet fs;
      std::string error;
      if (!kvr::sim::FaultSet::parse(next(), &fs, &error)) usage(error.c_str());
      pins.faults = fs;
    } else if (a == "--trace") {
      opts.tracePath = next();
    } else if (a == "--history") {
      opts.historyPath = next();
    } else if (a == "--mem-store") {
      opts.memStore = true;  // diagnosis: in-memory storage instead of the WAL code
    } else if (a == "--json") {
      json = true;
    } else if (a == "--shrink") {
      shrink = true;
    } else if (a == "--quiet") {
      quiet = true;
    } else if (a == "--help" || a == "-h") {
      usage(nullptr);
    } else {
      usage(("unknown flag " + a).c_str());
    }
  }
  if (!haveSeed) usage("give --seed S or --seeds A..B");
  if (first != last && (!opts.tracePath.empty() || !opts.historyPath.empty())) {
    usage("--trace and --history take a single --seed");
  }

  uint64_t runs = 0, failures = 0, simNs = 0, events = 0, messages = 0, transfers = 0;
  uint64_t traceXor = 0;
  std::array<uint64_t, kFaultCount> faults{};
  std::string firstFailure;
  auto start = std::chrono::steady_clock::now();
  for (uint64_t seed = first; seed <= last; ++seed) {
    Scenario sc = Scenario::draw(seed, pins);
    RunResult r = kvr::sim::runScenario(sc, opts);
    ++runs;
    simNs += r.simNs;
    events += r.events;
    messages += r.messages;
    transfers += r.transfers;
    traceXor ^= r.traceHash;
    for (size_t i = 0; i < kFaultCount; ++i) faults[i] += r.faults[i];
    if (!r.ok) {
      ++failures;
      std::string replay = "build/bin/kvsim --seed " + std::to_string(seed) + kvr::sim::pinFlags(pins);
      fprintf(stderr, "VIOLATION %s at event %" PRIu64 " (seed %" PRIu64 ", %s)\n  %s\n  replay: %s\n",
              r.property.c_str(), r.failedAtEvent, seed, sc.describe().c_str(),
              r.detail.c_str(), replay.c_str());
      if (firstFailure.empty()) firstFailure = r.property + " seed " + std::to_string(seed);
      if (shrink) {
        kvr::sim::ShrinkResult s = kvr::sim::shrinkScenario(sc, r.property);
        fprintf(stderr, "  shrunk in %" PRIu64 " runs to: %s\n  replay: build/bin/kvsim --seed %" PRIu64 "%s\n",
                s.runs, s.scenario.describe().c_str(), seed, s.flags.c_str());
      }
    }
    if (first == last && !quiet) {
      printf("seed %" PRIu64 ": %s  %s\n  ops ok=%" PRIu64 " fail=%" PRIu64 " unknown=%" PRIu64
             "  commit=%" PRIu64 "  events=%" PRIu64 "  sim=%.3fs  trace=%016" PRIx64 "\n",
             seed, r.ok ? "ok" : "FAILED", sc.describe().c_str(), r.opsOk, r.opsFail, r.opsUnknown,
             r.maxCommit, r.events, static_cast<double>(r.simNs) / 1e9, r.traceHash);
    } else if (!quiet && (runs % 10 == 0 || seed == last)) {
      double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      fprintf(stderr, "\r%" PRIu64 "/%" PRIu64 " runs, %" PRIu64 " failed, %.1fs", runs,
              last - first + 1, failures, wall);
      if (seed == last) fprintf(stderr, "\n");
    }
  }
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  double evps = wall > 0 ? static_cast<double>(events) / wall : 0;
  double accel = wall > 0 ? static_cast<double>(simNs) / 1e9 / wall : 0;
  printf("runs=%" PRIu64 " failures=%" PRIu64 " sim_time=%.1fs events=%" PRIu64
         " events_per_s=%.0f seeds_per_min=%.1f accel=%.1fx trace_hash=%016" PRIx64 "\n",
         runs, failures, static_cast<double>(simNs) / 1e9, events, evps,
         wall > 0 ? static_cast<double>(runs) * 60 / wall : 0, accel, traceXor);
  printf("faults:");
  for (size_t i = 0; i < kFaultCount; ++i) {
    printf(" %s=%" PRIu64, kvr::sim::faultName(static_cast<Fault>(i)), faults[i]);
  }
  printf(" transfer=%" PRIu64 "\n", transfers);
  if (json) {
    printf("{\"runs\":%" PRIu64 ",\"failures\":%" PRIu64 ",\"sim_seconds\":%.3f,\"events\":%" PRIu64
           ",\"messages\":%" PRIu64 ",\"wall_seconds\":%.3f,\"events_per_second\":%.0f,"
           "\"seeds_per_minute\":%.1f,\"acceleration\":%.1f,\"trace_hash\":\"%016" PRIx64 "\","
           "\"first_failure\":\"%s\",\"faults\":{",
           runs, failures, static_cast<double>(simNs) / 1e9, events, messages, wall, evps,
           wall > 0 ? static_cast<double>(runs) * 60 / wall : 0, accel, traceXor,
           firstFailure.c_str());
    for (size_t i = 0; i < kFaultCount; ++i) {
      printf("%s\"%s\":%" PRIu64, i ? "," : "", kvr::sim::faultName(static_cast<Fault>(i)), faults[i]);
    }
    printf(",\"transfer\":%" PRIu64 "}}\n", transfers);
  }
  return failures == 0 ? 0 : 1;
}
