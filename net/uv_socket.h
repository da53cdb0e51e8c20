// kj streams and connection receivers over non-blocking fds watched by libuv.
//
// These are what UvLowLevelAsyncIo hands to kj; most code should go through
// kj::AsyncIoProvider (see net/uv_io.h) instead of using them directly.
#pragma once

#include <uv.h>

#include <kj/async-io.h>
#include <kj/io.h>
#include <kj/timer.h>

#include "net/uv_fd_watcher.h"

struct iovec;

namespace kvr::net {

// Applies kj's LowLevelAsyncIoProvider flags (non-blocking, close-on-exec) to `fd`.
int prepareFd(int fd, uint flags);

// Turns off Nagle's algorithm on TCP sockets: RPC traffic is many small request/response
// messages, and Nagle plus delayed ACKs would add tens of milliseconds to each.
void setNoDelayIfTcp(int fd, int addressFamily);

// "1.2.3.4:80", "[::1]:80" or "unix:/path", for error messages.
kj::String describeAddress(const struct sockaddr* addr, uint addrlen);

class UvFdStream final : public kj::AsyncIoStream {
 public:
  // `flags`: kj::LowLevelAsyncIoProvider::Flags.
  UvFdStream(uv_loop_t* loop, int fd, uint flags);
  ~UvFdStream() noexcept(false);
  KJ_DISALLOW_COPY(UvFdStream);

  // kj::AsyncInputStream
  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override;

  // kj::AsyncOutputStream
  kj::Promise<void> write(const void* buffer, size_t size) override;
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override;
  kj::Promise<void> whenWriteDisconnected() override;

  // kj::AsyncIoStream
  void shutdownWrite() override;
  void abortRead() override;
  void getsockopt(int level, int option, void* value, uint* length) override;
  void setsockopt(int level, int option, const void* value, uint length) override;
  void getsockname(struct sockaddr* addr, uint* length) override;
  void getpeername(struct sockaddr* addr, uint* length) override;
  kj::Maybe<int> getFd() const override { return fd_; }

  // Resolves when a non-blocking connect() has finished, successfully or not.
  kj::Promise<void> whenConnectFinished() { return watcher_.whenWritable(); }

 private:
  kj::Promise<size_t> readAtLeast(kj::byte* buffer, size_t minBytes, size_t maxBytes,
                                  size_t alreadyRead);
  kj::Promise<void> writeAll(kj::Array<struct iovec> pieces, size_t first);
  ssize_t writeSome(const struct iovec* pieces, size_t count);

  kj::AutoCloseFd ownedFd_;  // empty unless TAKE_OWNERSHIP; closed after the watcher stops
  int fd_;
  bool isSocket_;  // sockets use sendmsg(MSG_NOSIGNAL): no SIGPIPE on a dead peer
  // The last read() returned less than it asked for: the socket's receive queue was
  // empty then, so the next read waits for readability first instead of calling read()
  // to hear EAGAIN (a fifth of a leader's reads were such empty calls).
  bool drained_ = false;
  UvFdWatcher watcher_;
  kj::Maybe<kj::ForkedPromise<void>> writeDisconnected_;
};

class UvConnectionReceiver final : public kj::ConnectionReceiver {
 public:
  UvConnectionReceiver(uv_loop_t* loop, int fd, uint flags,
                       kj::LowLevelAsyncIoProvider::NetworkFilter& filter, kj::Timer& timer);
  ~UvConnectionReceiver() noexcept(false);
  KJ_DISALLOW_COPY(UvConnectionReceiver);

  kj::Promise<kj::Own<kj::AsyncIoStream>> accept() override;
  uint getPort() override;
  void getsockopt(int level, int option, void* value, uint* length) override;
  void setsockopt(int level, int option, const void* value, uint length) override;
  void getsockname(struct sockaddr* addr, uint* length) override;

  // After running out of fds or memory, accept() waits this long before trying again
  // rather than failing the whole listener.
  static constexpr kj::Duration kRetryAfterExhaustion = 100 * kj::MILLISECONDS;

 private:
  kj::Promise<kj::Own<kj::AsyncIoStream>> acceptNow();

  kj::AutoCloseFd ownedFd_;
  int fd_;
  UvFdWatcher watcher_;
  kj::LowLevelAsyncIoProvider::NetworkFilter& filter_;
  kj::Timer& timer_;
};

}  // namespace kvr::net
