#include "sim/summary.h"

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "core/text.h"
#include "sim/json.h"

namespace kvr::sim {

namespace {

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  va_list copy;
  va_copy(copy, ap);
  int n = vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  std::string s(static_cast<size_t>(n), '\0');
  vsnprintf(s.data(), s.size() + 1, fmt, ap);
  va_end(ap);
  return s;
}

std::string jsonString(const std::string& s) { return text::quoted(s, text::Quote::Json); }

using json::getString;
using json::getU64;

}  // namespace

void Summary::add(uint64_t seed, const RunResult& r) {
  if (runs == 0) seedsFrom = seed;
  seedsTo = seed;
  ++runs;
  simNs += r.simNs;
  events += r.events;
  messages += r.messages;
  transfers += r.transfers;
  memberChanges += r.memberChanges;
  traceHash ^= r.traceHash;
  for (size_t i = 0; i < kFaultCount; ++i) faults[i] += r.faults[i];
  for (size_t i = 0; i < kProbeCount; ++i) probeSeeds[i] += r.probes[i] > 0 ? 1 : 0;
  if (!r.ok) {
    ++failures;
    if (firstFailure.empty()) firstFailure = r.property + " seed " + std::to_string(seed);
  }
}

std::string Summary::text() const {
  double wall = wallSeconds;
  std::string s = format("runs=%" PRIu64 " failures=%" PRIu64 " sim_time=%.1fs events=%" PRIu64
                         " events_per_s=%.0f seeds_per_min=%.1f accel=%.1fx "
                         "trace_hash=%016" PRIx64 "\n",
                         runs, failures, static_cast<double>(simNs) / 1e9, events,
                         wall > 0 ? static_cast<double>(events) / wall : 0,
                         wall > 0 ? static_cast<double>(runs) * 60 / wall : 0,
                         wall > 0 ? static_cast<double>(simNs) / 1e9 / wall : 0, traceHash);
  s += "faults:";
  for (size_t i = 0; i < kFaultCount; ++i) {
    s += format(" %s=%" PRIu64, faultName(static_cast<Fault>(i)), faults[i]);
  }
  s += format(" transfer=%" PRIu64 " membership=%" PRIu64 "\n", transfers, memberChanges);
  s += "probes (seeds reaching each):";
  for (size_t i = 0; i < kProbeCount; ++i) {
    s += format(" %s=%" PRIu64, probeName(static_cast<Probe>(i)), probeSeeds[i]);
  }
  s += "\n";
  return s;
}

std::string Summary::json() const {
  double wall = wallSeconds;
  std::string s = format("{\"runs\":%" PRIu64 ",\"failures\":%" PRIu64
                         ",\"sim_seconds\":%.3f,\"events\":%" PRIu64 ",\"messages\":%" PRIu64
                         ",\"wall_seconds\":%.3f,\"events_per_second\":%.0f,"
                         "\"seeds_per_minute\":%.1f,\"acceleration\":%.1f,\"trace_hash\":\"%"
                         "016" PRIx64 "\","
                         "\"first_failure\":",
                         runs, failures, static_cast<double>(simNs) / 1e9, events, messages,
                         wall, wall > 0 ? static_cast<double>(events) / wall : 0,
                         wall > 0 ? static_cast<double>(runs) * 60 / wall : 0,
                         wall > 0 ? static_cast<double>(simNs) / 1e9 / wall : 0, traceHash);
  s += jsonString(firstFailure);
  s += ",\"faults\":{";
  for (size_t i = 0; i < kFaultCount; ++i) {
    s += format("%s\"%s\":%" PRIu64, i ? "," : "", faultName(static_cast<Fault>(i)), faults[i]);
  }
  s += format(",\"transfer\":%" PRIu64 ",\"membership\":%" PRIu64 "},\"probes\":{", transfers,
              memberChanges);
  for (size_t i = 0; i < kProbeCount; ++i) {
    s += format("%s\"%s\":%" PRIu64, i ? "," : "", probeName(static_cast<Probe>(i)),
                probeSeeds[i]);
  }
  s += format("},\"seeds_from\":%" PRIu64 ",\"seeds_to\":%" PRIu64 ",\"sim_ns\":%" PRIu64
              ",\"pins\":",
              seedsFrom, seedsTo, simNs);
  s += jsonString(pins);
  s += "}";
  return s;
}

bool Summary::parse(const std::string& text, Summary* out, std::string* error) {
  json::Value doc;
  std::string why;
  if (!json::parse(text, &doc, &why)) {
    *error = "not a kvsim summary (not a JSON object: " + why + ")";
    return false;
  }
  if (doc.kind != json::Value::Object) {
    *error = "not a JSON object";
    return false;
  }
  // Everything a kvsim summary has had from the start: without these it is not one.
  for (const char* key : {"runs", "failures", "events", "messages", "trace_hash", "faults"}) {
    if (doc.get(key) == nullptr) {
      *error = std::string("not a kvsim summary (no '") + key + "')";
      return false;
    }
  }
  if (doc.get("seeds_from") == nullptr || doc.get("seeds_to") == nullptr ||
      doc.get("sim_ns") == nullptr || doc.get("pins") == nullptr) {
    *error = "a kvsim summary without seeds_from/seeds_to/sim_ns/pins (written by an older "
             "kvsim?); rerun that shard with this kvsim";
    return false;
  }
  Summary s;
  if (!getU64(doc, "runs", &s.runs, error) || !getU64(doc, "failures", &s.failures, error) ||
      !getU64(doc, "events", &s.events, error) ||
      !getU64(doc, "messages", &s.messages, error) ||
      !getU64(doc, "seeds_from", &s.seedsFrom, error) ||
      !getU64(doc, "seeds_to", &s.seedsTo, error) || !getU64(doc, "sim_ns", &s.simNs, error) ||
      !getString(doc, "first_failure", &s.firstFailure, error) ||
      !getString(doc, "pins", &s.pins, error)) {
    return false;
  }
  std::string hash;
  if (!getString(doc, "trace_hash", &hash, error)) return false;
  if (hash.size() != 16 || hash.find_first_not_of("0123456789abcdef") != std::string::npos) {
    *error = "'trace_hash' is not 16 hex digits";
    return false;
  }
  s.traceHash = strtoull(hash.c_str(), nullptr, 16);
  const json::Value* f = doc.get("faults");
  if (f->kind != json::Value::Object) {
    *error = "'faults' is not an object";
    return false;
  }
  for (size_t i = 0; i < kFaultCount; ++i) {
    std::string name = faultName(static_cast<Fault>(i));
    if (!getU64(*f, name, &s.faults[i], error)) {
      *error = "faults: " + *error;
      return false;
    }
  }
  if (!getU64(*f, "transfer", &s.transfers, error) ||
      !getU64(*f, "membership", &s.memberChanges, error)) {
    *error = "faults: " + *error;
    return false;
  }
  if (f->members.size() != kFaultCount + 2) {
    *error = "'faults' has kinds this kvsim does not know";
    return false;
  }
  const json::Value* pr = doc.get("probes");
  if (pr == nullptr || pr->kind != json::Value::Object) {
    *error = "a kvsim summary without 'probes' (written by an older kvsim?); rerun that shard "
             "with this kvsim";
    return false;
  }
  for (size_t i = 0; i < kProbeCount; ++i) {
    if (!getU64(*pr, probeName(static_cast<Probe>(i)), &s.probeSeeds[i], error)) {
      *error = "probes: " + *error;
      return false;
    }
  }
  if (pr->members.size() != kProbeCount) {
    *error = "'probes' has names this kvsim does not know";
    return false;
  }
  if (const json::Value* w = doc.get("wall_seconds");
      w != nullptr && w->kind == json::Value::Number) {
    s.wallSeconds = strtod(w->text.c_str(), nullptr);
  }
  if (s.seedsTo < s.seedsFrom || s.runs != s.seedsTo - s.seedsFrom + 1) {
    *error = "inconsistent: runs=" + std::to_string(s.runs) + " for seeds " +
             std::to_string(s.seedsFrom) + ".." + std::to_string(s.seedsTo);
    return false;
  }
  if (s.failures > s.runs || (s.failures == 0) != s.firstFailure.empty()) {
    *error = "inconsistent: failures=" + std::to_string(s.failures) + " with first_failure '" +
             s.firstFailure + "'";
    return false;
  }
  *out = std::move(s);
  return true;
}

bool mergeSummaries(std::vector<NamedSummary> shards, Summary* out, std::string* error) {
  if (shards.empty()) {
    *error = "nothing to merge";
    return false;
  }
  std::stable_sort(shards.begin(), shards.end(),
                   [](const NamedSummary& a, const NamedSummary& b) {
                     return a.summary.seedsFrom < b.summary.seedsFrom;
                   });
  auto range = [](const NamedSummary& n) {
    return n.name + " (seeds " + std::to_string(n.summary.seedsFrom) + ".." +
           std::to_string(n.summary.seedsTo) + ")";
  };
  Summary m;
  for (size_t i = 0; i < shards.size(); ++i) {
    const Summary& s = shards[i].summary;
    if (i > 0) {
      const NamedSummary& prev = shards[i - 1];
      if (s.seedsFrom <= prev.summary.seedsTo) {
        *error = range(prev) + " and " + range(shards[i]) + " overlap";
        return false;
      }
      if (s.seedsFrom != prev.summary.seedsTo + 1) {
        *error = "seeds " + std::to_string(prev.summary.seedsTo + 1) + ".." +
                 std::to_string(s.seedsFrom - 1) + " are missing between " + range(prev) +
                 " and " + range(shards[i]);
        return false;
      }
      if (s.pins != m.pins) {
        *error = range(shards[0]) + " ran with flags '" + m.pins + "' but " + range(shards[i]) +
                 " with '" + s.pins + "'";
        return false;
      }
    } else {
      m.seedsFrom = s.seedsFrom;
      m.pins = s.pins;
    }
    m.seedsTo = s.seedsTo;
    m.runs += s.runs;
    m.failures += s.failures;
    m.simNs += s.simNs;
    m.events += s.events;
    m.messages += s.messages;
    m.transfers += s.transfers;
    m.memberChanges += s.memberChanges;
    m.traceHash ^= s.traceHash;
    for (size_t k = 0; k < kFaultCount; ++k) m.faults[k] += s.faults[k];
    for (size_t k = 0; k < kProbeCount; ++k) m.probeSeeds[k] += s.probeSeeds[k];
    if (m.firstFailure.empty()) m.firstFailure = s.firstFailure;
    m.wallSeconds += s.wallSeconds;
  }
  *out = std::move(m);
  return true;
}

std::string Summary::missedProbes() const {
  std::string out;
  for (size_t i = 0; i < kProbeCount; ++i) {
    if (probeSeeds[i] > 0 || !probeRequired(static_cast<Probe>(i))) continue;
    if (!out.empty()) out += ",";
    out += probeName(static_cast<Probe>(i));
  }
  return out;
}

std::string summaryObjectOf(const std::string& fileText) {
  size_t b = fileText.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = fileText.find_last_not_of(" \t\r\n");
  std::string trimmed = fileText.substr(b, e - b + 1);
  if (trimmed.front() == '{' && trimmed.back() == '}') {
    // One object, possibly pretty-printed; a whole kvsim output starts with "runs=".
    json::Value doc;
    std::string error;
    if (json::parse(trimmed, &doc, &error)) return trimmed;
  }
  size_t nl = trimmed.find_last_of('\n');
  std::string last = nl == std::string::npos ? trimmed : trimmed.substr(nl + 1);
  if (!last.empty() && last.back() == '\r') last.pop_back();
  return last;
}

}  // namespace kvr::sim
