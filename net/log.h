// The node's operator log, structured: every line is one event with a time, a level, the
// node id, the node's current term (when known) and the message.
//
//   text (default):  2024-05-01T12:00:00.123Z info kvnode 2 term 5: became leader
//   json:            {"ts":"2024-05-01T12:00:00.123Z","level":"info","node":2,"term":5,"msg":"became leader"}
//
// Times are UTC, RFC 3339 with milliseconds. The text form keeps the message exactly as
// it was before levels existed ("kvnode N term T: ..."), after the time and the level.
// In JSON, `term` is null when the node does not know it (before its data dir is read).
// The format is process-wide, chosen once at start (kvnode --log-format).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <kj/exception.h>

namespace kvr::net {

enum class LogLevel : uint8_t { Info, Warn, Error };
enum class LogFormat : uint8_t { Text, Json };

const char* logLevelName(LogLevel level);
// "text" or "json"; false for anything else.
bool parseLogFormat(std::string_view text, LogFormat* out);

// Process-wide settings, set before the node starts.
void setLogFormat(LogFormat format);
LogFormat logFormat();
// The node id used by logEvent callers that do not know it (failStop, kj's own log).
void setLogNode(uint32_t node);
uint32_t logNode();

// One line (without the newline). `unixMillis`: milliseconds since the epoch.
std::string formatLogLine(LogFormat format, int64_t unixMillis, LogLevel level, uint32_t node,
                          std::optional<uint64_t> term, std::string_view msg);

// Formats with the process-wide format and the current time and writes the line to
// stderr in one write.
void logEvent(LogLevel level, uint32_t node, std::optional<uint64_t> term,
              std::string_view msg);

// The level of a line logged by a component below the node (peer transport, Raft
// service) through a plain LogFn: connection losses and refusals are warnings.
LogLevel componentLineLevel(std::string_view line);

// RFC 3339 UTC with milliseconds: 2024-05-01T12:00:00.123Z.
std::string formatUtcMillis(int64_t unixMillis);
// A JSON string literal (quotes included); bytes that are not valid UTF-8 become U+FFFD.
std::string jsonString(std::string_view text);

// Routes kj's own log messages (KJ_LOG, capnp's warnings) through logEvent, as node
// logNode() with an unknown term, while alive on this thread. Like every kj
// ExceptionCallback it must live on the stack (main's).
class KjLogRedirect final : public kj::ExceptionCallback {
 public:
  KjLogRedirect() = default;
  void logMessage(kj::LogSeverity severity, const char* file, int line, int contextDepth,
                  kj::String&& text) override;
};

}  // namespace kvr::net
