#include "net/uv_socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <kj/debug.h>

namespace kvr::net {

using Flags = kj::LowLevelAsyncIoProvider::Flags;

int prepareFd(int fd, uint flags) {
  if (!(flags & Flags::ALREADY_NONBLOCK)) {
    int fl;
    KJ_SYSCALL(fl = fcntl(fd, F_GETFL), fd);
    if (!(fl & O_NONBLOCK)) {
      KJ_SYSCALL(fcntl(fd, F_SETFL, fl | O_NONBLOCK), fd);
    }
  }
  if ((flags & Flags::TAKE_OWNERSHIP) && !(flags & Flags::ALREADY_CLOEXEC)) {
    KJ_SYSCALL(fcntl(fd, F_SETFD, FD_CLOEXEC), fd);
  }
  return fd;
}

void setNoDelayIfTcp(int fd, int addressFamily) {
  if (addressFamily != AF_INET && addressFamily != AF_INET6) return;
  int one = 1;
  KJ_SYSCALL(::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), fd);
}

kj::String describeAddress(const struct sockaddr* addr, uint addrlen) {
  char text[INET6_ADDRSTRLEN] = {0};
  switch (addr->sa_family) {
    case AF_INET: {
      auto* in = reinterpret_cast<const struct sockaddr_in*>(addr);
      inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
      return kj::str(text, ':', ntohs(in->sin_port));
    }
    case AF_INET6: {
      auto* in6 = reinterpret_cast<const struct sockaddr_in6*>(addr);
      inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
      return kj::str('[', text, "]:", ntohs(in6->sin6_port));
    }
    case AF_UNIX: {
      auto* un = reinterpret_cast<const struct sockaddr_un*>(addr);
      size_t maxLen = addrlen > offsetof(struct sockaddr_un, sun_path)
                          ? addrlen - offsetof(struct sockaddr_un, sun_path)
                          : 0;
      return kj::str("unix:", kj::heapString(un->sun_path, strnlen(un->sun_path, maxLen)));
    }
    default: return kj::str("(address family ", addr->sa_family, ")");
  }
}

namespace {

bool isSocketFd(int fd) {
  struct stat st;
  KJ_SYSCALL(fstat(fd, &st), fd);
  return S_ISSOCK(st.st_mode);
}

kj::AutoCloseFd ownIf(int fd, uint flags) {
  return (flags & Flags::TAKE_OWNERSHIP) ? kj::AutoCloseFd(fd) : kj::AutoCloseFd();
}

}  // namespace

// ---------------------------------------------------------------------------------------
// UvFdStream

UvFdStream::UvFdStream(uv_loop_t* loop, int fd, uint flags)
    : ownedFd_(ownIf(fd, flags)),
      fd_(prepareFd(fd, flags)),
      isSocket_(isSocketFd(fd)),
      watcher_(loop, fd) {}

UvFdStream::~UvFdStream() noexcept(false) {}

kj::Promise<size_t> UvFdStream::tryRead(void* buffer, size_t minBytes, size_t maxBytes) {
  return kj::evalNow(
      [&]() { return readAtLeast(static_cast<kj::byte*>(buffer), minBytes, maxBytes, 0); });
}

kj::Promise<size_t> UvFdStream::readAtLeast(kj::byte* buffer, size_t minBytes, size_t maxBytes,
                                            size_t alreadyRead) {
  auto readWhenReadable = [&]() {
    return watcher_.whenReadable().then([this, buffer, minBytes, maxBytes, alreadyRead]() {
      return readAtLeast(buffer, minBytes, maxBytes, alreadyRead);
    });
  };
  for (;;) {
    if (drained_) {
      drained_ = false;
      return readWhenReadable();
    }
    ssize_t n = ::read(fd_, buffer, maxBytes);
    if (n < 0) {
      int error = errno;
      if (error == EINTR) continue;
      if (error == EAGAIN || error == EWOULDBLOCK) return readWhenReadable();
      // kj maps errno to the exception type: ECONNRESET etc. become DISCONNECTED.
      KJ_FAIL_SYSCALL("read()", error, fd_);
    }
    if (n == 0) return alreadyRead;  // end of stream
    size_t got = static_cast<size_t>(n);
    drained_ = isSocket_ && got < maxBytes;
    alreadyRead += got;
    if (got >= minBytes) return alreadyRead;
    buffer += got;
    minBytes -= got;
    maxBytes -= got;
  }
}

kj::Promise<void> UvFdStream::write(const void* buffer, size_t size) {
  auto pieces = kj::heapArray<struct iovec>(1);
  pieces[0].iov_base = const_cast<void*>(buffer);
  pieces[0].iov_len = size;
  return kj::evalNow([&]() { return writeAll(kj::mv(pieces), 0); });
}

kj::Promise<void> UvFdStream::write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
  auto iov = kj::heapArray<struct iovec>(pieces.size());
  for (size_t i = 0; i < pieces.size(); ++i) {
    iov[i].iov_base = const_cast<kj::byte*>(pieces[i].begin());
    iov[i].iov_len = pieces[i].size();
  }
  return kj::evalNow([&]() { return writeAll(kj::mv(iov), 0); });
}

ssize_t UvFdStream::writeSome(const struct iovec* pieces, size_t count) {
  if (isSocket_) {
    struct msghdr msg = {};
    msg.msg_iov = const_cast<struct iovec*>(pieces);
    msg.msg_iovlen = count;
    return ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
  }
  return ::writev(fd_, pieces, static_cast<int>(count));
}

kj::Promise<void> UvFdStream::writeAll(kj::Array<struct iovec> pieces, size_t first) {
  for (;;) {
    while (first < pieces.size() && pieces[first].iov_len == 0) ++first;
    if (first == pieces.size()) return kj::READY_NOW;

    size_t count = kj::min(pieces.size() - first, static_cast<size_t>(IOV_MAX));
    ssize_t n = writeSome(pieces.begin() + first, count);
    if (n < 0) {
      int error = errno;
      if (error == EINTR) continue;
      if (error == EAGAIN || error == EWOULDBLOCK) {
        return watcher_.whenWritable().then([this, pieces = kj::mv(pieces), first]() mutable {
          return writeAll(kj::mv(pieces), first);
        });
      }
      // EPIPE / ECONNRESET become DISCONNECTED exceptions.
      KJ_FAIL_SYSCALL("write()", error, fd_);
    }

    // Consume what was written from the front of the remaining pieces.
    size_t written = static_cast<size_t>(n);
    while (written > 0) {
      struct iovec& piece = pieces[first];
      if (written >= piece.iov_len) {
        written -= piece.iov_len;
        piece.iov_len = 0;
        ++first;
      } else {
        piece.iov_base = static_cast<kj::byte*>(piece.iov_base) + written;
        piece.iov_len -= written;
        written = 0;
      }
    }
  }
}

kj::Promise<void> UvFdStream::whenWriteDisconnected() {
  KJ_IF_MAYBE(forked, writeDisconnected_) {
    return forked->addBranch();
  }
  auto forked = watcher_.whenHungUp().fork();
  auto branch = forked.addBranch();
  writeDisconnected_ = kj::mv(forked);
  return branch;
}

void UvFdStream::shutdownWrite() { KJ_SYSCALL(::shutdown(fd_, SHUT_WR), fd_); }

void UvFdStream::abortRead() {
  // Not connected any more means nothing left to abort.
  if (::shutdown(fd_, SHUT_RD) < 0 && errno != ENOTCONN) {
    KJ_FAIL_SYSCALL("shutdown(SHUT_RD)", errno, fd_);
  }
}

void UvFdStream::getsockopt(int level, int option, void* value, uint* length) {
  socklen_t len = *length;
  KJ_SYSCALL(::getsockopt(fd_, level, option, value, &len), fd_);
  *length = len;
}

void UvFdStream::setsockopt(int level, int option, const void* value, uint length) {
  KJ_SYSCALL(::setsockopt(fd_, level, option, value, length), fd_);
}

void UvFdStream::getsockname(struct sockaddr* addr, uint* length) {
  socklen_t len = *length;
  KJ_SYSCALL(::getsockname(fd_, addr, &len), fd_);
  *length = len;
}

void UvFdStream::getpeername(struct sockaddr* addr, uint* length) {
  socklen_t len = *length;
  KJ_SYSCALL(::getpeername(fd_, addr, &len), fd_);
  *length = len;
}

// ---------------------------------------------------------------------------------------
// UvConnectionReceiver

UvConnectionReceiver::UvConnectionReceiver(uv_loop_t* loop, int fd, uint flags,
                                           kj::LowLevelAsyncIoProvider::NetworkFilter& filter,
                                           kj::Timer& timer)
    : ownedFd_(ownIf(fd, flags)),
      fd_(prepareFd(fd, flags)),
      watcher_(loop, fd),
      filter_(filter),
      timer_(timer) {}

UvConnectionReceiver::~UvConnectionReceiver() noexcept(false) {}

kj::Promise<kj::Own<kj::AsyncIoStream>> UvConnectionReceiver::accept() {
  return kj::evalNow([this]() { return acceptNow(); });
}

kj::Promise<kj::Own<kj::AsyncIoStream>> UvConnectionReceiver::acceptNow() {
  for (;;) {
    struct sockaddr_storage addr;
    socklen_t addrlen = sizeof(addr);
    int fd = ::accept4(fd_, reinterpret_cast<struct sockaddr*>(&addr), &addrlen,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int error = errno;
      switch (error) {
        case EINTR: continue;
        case EAGAIN:
#if EAGAIN != EWOULDBLOCK
        case EWOULDBLOCK:
#endif
          return watcher_.whenReadable().then([this]() { return acceptNow(); });
        // A connection that died while queued, or a pending network error (accept(2)
        // says to retry on these): not a problem of the listener.
        case ECONNABORTED:
        case EPROTO:
        case EPERM:
        case ENETDOWN:
        case ENOPROTOOPT:
        case EHOSTDOWN:
        case ENONET:
        case EHOSTUNREACH:
        case EOPNOTSUPP:
        case ENETUNREACH: continue;
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
          KJ_LOG(ERROR, "accept() out of resources; retrying shortly", strerror(error));
          return timer_.afterDelay(kRetryAfterExhaustion).then([this]() {
            return acceptNow();
          });
        default: KJ_FAIL_SYSCALL("accept()", error, fd_);
      }
    }

    kj::AutoCloseFd owned(fd);
    auto* peer = reinterpret_cast<struct sockaddr*>(&addr);
    if (!filter_.shouldAllow(peer, addrlen)) continue;  // `owned` closes it
    setNoDelayIfTcp(fd, peer->sa_family);
    uint flags = Flags::TAKE_OWNERSHIP | Flags::ALREADY_CLOEXEC | Flags::ALREADY_NONBLOCK;
    auto stream = kj::heap<UvFdStream>(watcher_.loop(), owned.release(), flags);
    return kj::Own<kj::AsyncIoStream>(kj::mv(stream));
  }
}

uint UvConnectionReceiver::getPort() {
  struct sockaddr_storage addr;
  socklen_t addrlen = sizeof(addr);
  KJ_SYSCALL(::getsockname(fd_, reinterpret_cast<struct sockaddr*>(&addr), &addrlen), fd_);
  switch (addr.ss_family) {
    case AF_INET: return ntohs(reinterpret_cast<struct sockaddr_in*>(&addr)->sin_port);
    case AF_INET6: return ntohs(reinterpret_cast<struct sockaddr_in6*>(&addr)->sin6_port);
    default: return 0;
  }
}

void UvConnectionReceiver::getsockopt(int level, int option, void* value, uint* length) {
  socklen_t len = *length;
  KJ_SYSCALL(::getsockopt(fd_, level, option, value, &len), fd_);
  *length = len;
}

void UvConnectionReceiver::setsockopt(int level, int option, const void* value, uint length) {
  KJ_SYSCALL(::setsockopt(fd_, level, option, value, length), fd_);
}

void UvConnectionReceiver::getsockname(struct sockaddr* addr, uint* length) {
  socklen_t len = *length;
  KJ_SYSCALL(::getsockname(fd_, addr, &len), fd_);
  *length = len;
}

}  // namespace kvr::net
