#include "net/node_log.h"

#include <unistd.h>

#include <cstdio>

#include "net/log.h"

namespace kvr::net {

void writeLogLine(const std::string& line) {
  std::string out = line + "\n";
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::write(STDERR_FILENO, out.data() + done, out.size() - done);
    if (n <= 0) return;  // nowhere to log to; nothing better to do
    done += static_cast<size_t>(n);
  }
}

void failStop(const std::string& line) {
  logEvent(LogLevel::Error, logNode(), std::nullopt, line);
  ::_exit(1);
}

}  // namespace kvr::net
