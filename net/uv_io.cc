#include "net/uv_io.h"

#include <errno.h>
#include <sys/socket.h>

#include <kj/debug.h>

#include "net/uv_socket.h"

namespace kvr::net {

kj::Own<kj::AsyncInputStream> UvLowLevelAsyncIo::wrapInputFd(Fd fd, uint flags) {
  return kj::heap<UvFdStream>(port_.uvLoop(), fd, flags);
}

kj::Own<kj::AsyncOutputStream> UvLowLevelAsyncIo::wrapOutputFd(Fd fd, uint flags) {
  return kj::heap<UvFdStream>(port_.uvLoop(), fd, flags);
}

kj::Own<kj::AsyncIoStream> UvLowLevelAsyncIo::wrapSocketFd(Fd fd, uint flags) {
  return kj::heap<UvFdStream>(port_.uvLoop(), fd, flags);
}

kj::Promise<kj::Own<kj::AsyncIoStream>> UvLowLevelAsyncIo::wrapConnectingSocketFd(
    Fd fd, const struct sockaddr* addr, uint addrlen, uint flags) {
  return kj::evalNow([&]() -> kj::Promise<kj::Own<kj::AsyncIoStream>> {
    // Wrap first so that `flags` (ownership, non-blocking) apply before connect().
    auto stream = kj::heap<UvFdStream>(port_.uvLoop(), fd, flags);
    setNoDelayIfTcp(fd, addr->sa_family);
    kj::String address = describeAddress(addr, addrlen);

    for (;;) {
      if (::connect(fd, addr, addrlen) == 0) break;
      int error = errno;
      if (error == EINPROGRESS || error == EALREADY) break;  // finishes asynchronously
      if (error == EINTR) continue;
      KJ_FAIL_SYSCALL("connect()", error, address);
    }

    auto finished = stream->whenConnectFinished();
    return finished.then([stream = kj::mv(stream), fd,
                          address = kj::mv(address)]() mutable -> kj::Own<kj::AsyncIoStream> {
      int error = 0;
      socklen_t len = sizeof(error);
      KJ_SYSCALL(::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len), address);
      // ECONNREFUSED etc. become DISCONNECTED exceptions.
      if (error != 0) {
        KJ_FAIL_SYSCALL("connect()", error, address);
      }
      return kj::mv(stream);
    });
  });
}

kj::Own<kj::ConnectionReceiver> UvLowLevelAsyncIo::wrapListenSocketFd(Fd fd,
                                                                      NetworkFilter& filter,
                                                                      uint flags) {
  return kj::heap<UvConnectionReceiver>(port_.uvLoop(), fd, flags, filter, port_.timer());
}

UvAsyncIo::UvAsyncIo(uv_loop_t* loop)
    : port_(loop), lowLevel_(port_), provider_(kj::newAsyncIoProvider(lowLevel_)) {}

}  // namespace kvr::net
