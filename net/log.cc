#include "net/log.h"

#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>

namespace kvr::net {
namespace {

std::atomic<LogFormat> gFormat{LogFormat::Text};
std::atomic<uint32_t> gNode{0};

void writeAll(const std::string& out) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::write(STDERR_FILENO, out.data() + done, out.size() - done);
    if (n <= 0) return;  // nowhere to log to; nothing better to do
    done += static_cast<size_t>(n);
  }
}

int64_t nowUnixMillis() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

// Length of the valid UTF-8 sequence at text[i], or 0 if it is not one.
size_t utf8Length(std::string_view text, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  unsigned char c = byte(i);
  size_t n = 0;
  uint32_t min = 0;
  uint32_t cp = 0;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2, min = 0x80, cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3, min = 0x800, cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4, min = 0x10000, cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > text.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

}  // namespace

const char* logLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::Info: return "info";
    case LogLevel::Warn: return "warn";
    case LogLevel::Error: return "error";
  }
  return "info";
}

bool parseLogFormat(std::string_view text, LogFormat* out) {
  if (text == "text") {
    *out = LogFormat::Text;
  } else if (text == "json") {
    *out = LogFormat::Json;
  } else {
    return false;
  }
  return true;
}

void setLogFormat(LogFormat format) { gFormat.store(format, std::memory_order_relaxed); }
LogFormat logFormat() { return gFormat.load(std::memory_order_relaxed); }
void setLogNode(uint32_t node) { gNode.store(node, std::memory_order_relaxed); }
uint32_t logNode() { return gNode.load(std::memory_order_relaxed); }

std::string formatUtcMillis(int64_t unixMillis) {
  int64_t secs = unixMillis / 1000;
  int64_t millis = unixMillis % 1000;
  if (millis < 0) {
    millis += 1000;
    secs -= 1;
  }
  time_t t = static_cast<time_t>(secs);
  tm utc{};
  gmtime_r(&t, &utc);
  char buf[96];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                static_cast<int>(millis));
  return buf;
}

std::string jsonString(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out += '"';
  for (size_t i = 0; i < text.size();) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      size_t n = utf8Length(text, i);
      if (n == 0) {
        out += "\\ufffd";
        i += 1;
      } else {
        out.append(text.substr(i, n));
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7F) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
  out += '"';
  return out;
}

std::string formatLogLine(LogFormat format, int64_t unixMillis, LogLevel level, uint32_t node,
                          std::optional<uint64_t> term, std::string_view msg) {
  std::string ts = formatUtcMillis(unixMillis);
  if (format == LogFormat::Json) {
    std::string out = "{\"ts\":\"" + ts + "\",\"level\":\"" + logLevelName(level) +
                      "\",\"node\":" + std::to_string(node) +
                      ",\"term\":" + (term ? std::to_string(*term) : std::string("null")) +
                      ",\"msg\":";
    out += jsonString(msg);
    out += '}';
    return out;
  }
  std::string out = ts + " " + logLevelName(level) + " kvnode " + std::to_string(node);
  if (term) out += " term " + std::to_string(*term);
  out += ": ";
  for (char c : msg) out += (c == '\n' || c == '\r') ? ' ' : c;  // one line per event
  return out;
}

void logEvent(LogLevel level, uint32_t node, std::optional<uint64_t> term,
              std::string_view msg) {
  writeAll(formatLogLine(logFormat(), nowUnixMillis(), level, node, term, msg) + "\n");
}

LogLevel componentLineLevel(std::string_view line) {
  // PeerTransport: "peer N down: ...", "peer N refused our connection: ...", "peer N: TLS
  // handshake with ... failed: ...".
  // RaftService: "refusing peer connection: ...", "dropped a peer message: ...".
  if (line.starts_with("peer ") && (line.find(" down: ") != std::string_view::npos ||
                                    line.find(" refused ") != std::string_view::npos ||
                                    line.find(": TLS ") != std::string_view::npos)) {
    return LogLevel::Warn;
  }
  if (line.starts_with("refusing ") || line.starts_with("dropped ")) return LogLevel::Warn;
  return LogLevel::Info;
}

void KjLogRedirect::logMessage(kj::LogSeverity severity, const char* file, int line,
                               int contextDepth, kj::String&& text) {
  (void)file;
  (void)line;
  (void)contextDepth;
  LogLevel level = LogLevel::Info;
  switch (severity) {
    case kj::LogSeverity::WARNING: level = LogLevel::Warn; break;
    case kj::LogSeverity::ERROR:
    case kj::LogSeverity::FATAL: level = LogLevel::Error; break;
    case kj::LogSeverity::INFO:
    case kj::LogSeverity::DBG: level = LogLevel::Info; break;
  }
  std::string_view msg(text.cStr(), text.size());
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.remove_suffix(1);
  logEvent(level, logNode(), std::nullopt, msg);
}

}  // namespace kvr::net
