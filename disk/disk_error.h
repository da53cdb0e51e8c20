// How disk/ reports an unusable data directory: one kj::Exception whose description is
// a single sentence an operator can act on (no file:line noise in the text).
#pragma once

#include <string>

#include <kj/exception.h>

namespace kvr::disk {

// What an operator can do when this node's data cannot be trusted.
constexpr const char* kRestoreAdvice = "restore this node from a peer: remove the data dir and "
                                       "restart it empty";

[[noreturn]] inline void throwDiskError(const std::string& message) {
  kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                                        kj::heapString(message.data(), message.size())));
}

// "disk: refusing to start: <file> at byte offset <offset>: <what>. To recover: <advice>."
[[noreturn]] inline void refuseToStart(const std::string& file, uint64_t offset,
                                       const std::string& what) {
  throwDiskError("disk: refusing to start: " + file + " at byte offset " +
                 std::to_string(offset) + ": " + what + ". To recover: " + kRestoreAdvice +
                 ".");
}

}  // namespace kvr::disk
