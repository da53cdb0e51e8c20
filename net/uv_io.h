// kj async I/O (sockets, network addresses, timers) on a libuv loop.
//
// UvLowLevelAsyncIo implements kj::LowLevelAsyncIoProvider with fds watched by uv_poll_t;
// kj::newAsyncIoProvider() turns it into a full kj::AsyncIoProvider (address parsing,
// TCP listen/connect, pipes), on which capnp::TwoPartyVatNetwork / RpcSystem run
// unchanged. UvAsyncIo bundles the port, the low-level provider and the provider:
//
//     uv_loop_t loop;  uv_loop_init(&loop);
//     {
//       kvr::net::UvAsyncIo io(&loop);
//       auto addr = io.network().parseAddress("127.0.0.1", 0).wait(io.waitScope());
//       ...                     // or start work from uv callbacks and uv_run(&loop, ...)
//     }
//     uv_run(&loop, UV_RUN_DEFAULT);   // lets closed handles finish closing
//     uv_loop_close(&loop);
#pragma once

#include <uv.h>

#include <kj/async-io.h>

#include "net/uv_event_port.h"

namespace kvr::net {

class UvLowLevelAsyncIo final : public kj::LowLevelAsyncIoProvider {
 public:
  explicit UvLowLevelAsyncIo(UvEventPort& port) : port_(port) {}
  KJ_DISALLOW_COPY(UvLowLevelAsyncIo);

  kj::Own<kj::AsyncInputStream> wrapInputFd(Fd fd, uint flags = 0) override;
  kj::Own<kj::AsyncOutputStream> wrapOutputFd(Fd fd, uint flags = 0) override;
  kj::Own<kj::AsyncIoStream> wrapSocketFd(Fd fd, uint flags = 0) override;
  kj::Promise<kj::Own<kj::AsyncIoStream>> wrapConnectingSocketFd(Fd fd,
                                                                 const struct sockaddr* addr,
                                                                 uint addrlen,
                                                                 uint flags = 0) override;
  kj::Own<kj::ConnectionReceiver> wrapListenSocketFd(Fd fd, NetworkFilter& filter,
                                                     uint flags = 0) override;
  kj::Timer& getTimer() override { return port_.timer(); }

  // The overloads taking OwnFd, hidden by the overrides above.
  using kj::LowLevelAsyncIoProvider::wrapConnectingSocketFd;
  using kj::LowLevelAsyncIoProvider::wrapInputFd;
  using kj::LowLevelAsyncIoProvider::wrapListenSocketFd;
  using kj::LowLevelAsyncIoProvider::wrapOutputFd;
  using kj::LowLevelAsyncIoProvider::wrapSocketFd;

 private:
  UvEventPort& port_;
};

// Everything kj needs to run promises, timers and sockets on one uv loop (one per thread).
class UvAsyncIo {
 public:
  explicit UvAsyncIo(uv_loop_t* loop);
  KJ_DISALLOW_COPY(UvAsyncIo);

  uv_loop_t* uvLoop() const { return port_.uvLoop(); }
  UvEventPort& port() { return port_; }
  kj::WaitScope& waitScope() { return port_.waitScope(); }
  kj::Timer& timer() { return port_.timer(); }
  UvLowLevelAsyncIo& lowLevel() { return lowLevel_; }
  kj::AsyncIoProvider& provider() { return *provider_; }
  kj::Network& network() { return provider_->getNetwork(); }

 private:
  UvEventPort port_;
  UvLowLevelAsyncIo lowLevel_;
  kj::Own<kj::AsyncIoProvider> provider_;
};

}  // namespace kvr::net
