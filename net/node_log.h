// The node's operator log: one line per event on stderr, and the fail-stop exit.
//
// Lines look like `kvnode 2 term 5: became leader`. Components below the node (storage,
// transport, services) get a LogFn that adds that prefix, so they need not know the term.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace kvr::net {

using LogFn = std::function<void(const std::string& line)>;

// Called when the node cannot go on safely (a write or fsync failed, the core broke an
// invariant). Production: log the line and exit(1) at once; tests substitute a recorder.
using FatalFn = std::function<void(const std::string& line)>;

// Writes `line` and a newline to stderr in one write, so lines of concurrent processes
// sharing a terminal do not interleave mid-line.
void writeLogLine(const std::string& line);

// Logs `line` (as an error, through logEvent: net/log.h) and ends the process with exit code 1, without running destructors (the
// node's state may be inconsistent; what is durable is all that counts).
[[noreturn]] void failStop(const std::string& line);

// Allows one log line per `intervalMs` for one kind of event, counting the rest.
class LogRateLimiter {
 public:
  explicit LogRateLimiter(uint64_t intervalMs) : intervalMs_(intervalMs) {}

  // True if a line may be written now. *suppressed receives how many events were not
  // logged since the last line (only meaningful when true is returned).
  bool allow(uint64_t nowMs, uint64_t* suppressed) {
    if (logged_ && nowMs < lastMs_ + intervalMs_) {
      ++suppressed_;
      return false;
    }
    *suppressed = suppressed_;
    suppressed_ = 0;
    lastMs_ = nowMs;
    logged_ = true;
    return true;
  }

 private:
  uint64_t intervalMs_;
  uint64_t lastMs_ = 0;
  uint64_t suppressed_ = 0;
  bool logged_ = false;
};

}  // namespace kvr::net
