#include "sim/replay.h"

#include <sstream>
#include <vector>

#include "core/text.h"
#include "sim/shrink.h"

namespace kvr::sim {

namespace {

std::string formatKeep(const char* name, const std::vector<bool>& keep) {
  std::string s = std::string(name) + " " + std::to_string(keep.size());
  for (size_t k = 0; k < keep.size(); ++k) {
    if (keep[k]) s += " " + std::to_string(k);
  }
  return s + "\n";
}

// The largest count a replay file may claim (a run has far fewer events).
constexpr uint64_t kMaxScheduleEvents = 10'000'000;

bool parseKeep(std::istringstream& in, std::vector<bool>* keep, std::string* error) {
  std::string word;
  uint64_t count = 0;
  if (!(in >> word) ||
      text::parseUnsigned(word, &count, kMaxScheduleEvents) != text::NumberError::None) {
    *error = "a count of at most " + std::to_string(kMaxScheduleEvents) + " expected";
    return false;
  }
  keep->assign(count, false);
  while (in >> word) {
    uint64_t k = 0;
    if (text::parseUnsigned(word, &k) != text::NumberError::None || k >= count) {
      *error = "'" + word + "' is not an index below " + std::to_string(count);
      return false;
    }
    (*keep)[k] = true;
  }
  return true;
}

bool parsePins(const std::string& flags, ScenarioPins* pins, std::string* error) {
  std::istringstream in(flags);
  std::string flag, value;
  while (in >> flag) {
    if (!(in >> value)) {
      *error = flag + " has no value";
      return false;
    }
    if (flag == "--faults") {
      FaultSet fs;
      if (!FaultSet::parse(value, &fs, error)) return false;
      pins->faults = fs;
      continue;
    }
    if (flag == "--membership") {
      if (value != "on" && value != "off") {
        *error = "--membership " + value + ": on or off expected";
        return false;
      }
      pins->membership = value == "on";
      continue;
    }
    uint64_t n = 0;
    if (text::parseUnsigned(value, &n, 1'000'000) != text::NumberError::None) {
      *error = flag + " " + value + ": not a number up to 1000000";
      return false;
    }
    uint32_t v = static_cast<uint32_t>(n);
    if (flag == "--nodes") pins->nodes = v;
    else if (flag == "--clients") pins->clients = v;
    else if (flag == "--ops") pins->ops = v;
    else if (flag == "--keys") pins->keys = v;
    else {
      *error = "unknown pin " + flag;
      return false;
    }
  }
  return true;
}

}  // namespace

std::string formatReplay(const Replay& r) {
  std::string s = "kvsim-replay " + std::to_string(kReplayFormat) + "\n";
  s += "seed " + std::to_string(r.seed) + "\n";
  s += "pins" + pinFlags(r.pins) + "\n";
  s += "property " + r.property + "\n";
  s += formatKeep("faults", r.schedule.keepFaults);
  s += formatKeep("ops", r.schedule.keepOps);
  s += "chaos_end_ns " + std::to_string(r.schedule.chaosEndNs) + "\n";
  return s;
}

bool parseReplay(const std::string& text, Replay* out, std::string* error) {
  *out = Replay();
  std::istringstream lines(text);
  std::string line;
  uint32_t lineNo = 0;
  bool seen[6] = {};
  auto bad = [&](const std::string& why) {
    *error = "line " + std::to_string(lineNo) + ": " + why;
    return false;
  };
  while (std::getline(lines, line)) {
    ++lineNo;
    std::istringstream in(line);
    std::string field;
    if (!(in >> field)) continue;
    std::string rest;
    std::getline(in, rest);
    std::istringstream restIn(rest);
    if (lineNo == 1) {
      if (field != "kvsim-replay") return bad("not a kvsim replay file");
      std::string version = rest.substr(rest.find_first_not_of(' ') == std::string::npos
                                            ? rest.size()
                                            : rest.find_first_not_of(' '));
      if (version != std::to_string(kReplayFormat)) {
        return bad("replay format " + version + " is not the one this kvsim reads (" +
                   std::to_string(kReplayFormat) + "); replay it with the kvsim that wrote it");
      }
      continue;
    }
    std::string err;
    if (field == "seed") {
      std::string v;
      restIn >> v;
      if (text::parseUnsigned(v, &out->seed) != text::NumberError::None) {
        return bad("bad seed");
      }
      seen[0] = true;
    } else if (field == "pins") {
      if (!parsePins(rest, &out->pins, &err)) return bad(err);
      seen[1] = true;
    } else if (field == "property") {
      restIn >> out->property;
      if (out->property.empty()) return bad("no property");
      seen[2] = true;
    } else if (field == "faults") {
      if (!parseKeep(restIn, &out->schedule.keepFaults, &err)) return bad("faults: " + err);
      seen[3] = true;
    } else if (field == "chaos_end_ns") {
      std::string v;
      restIn >> v;
      if (text::parseUnsigned(v, &out->schedule.chaosEndNs) != text::NumberError::None) {
        return bad("bad chaos_end_ns");
      }
      seen[5] = true;
    } else if (field == "ops") {
      if (!parseKeep(restIn, &out->schedule.keepOps, &err)) return bad("ops: " + err);
      seen[4] = true;
    } else {
      return bad("unknown field '" + field + "'");
    }
  }
  if (lineNo == 0) return bad("empty file");
  const char* names[] = {"seed", "pins", "property", "faults", "ops", "chaos_end_ns"};
  for (int i = 0; i < 6; ++i) {
    if (!seen[i]) {
      *error = std::string("no '") + names[i] + "' line";
      return false;
    }
  }
  return true;
}

}  // namespace kvr::sim
