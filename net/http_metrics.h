// The node's metrics endpoint: HTTP/1.1 on the node's kj event loop (kj-http), serving
// the Prometheus text format at GET /metrics. Any other method gets 405 (with
// "Allow: GET"), any other path 404. It serves only what `render` returns and reads
// nothing but the request line and headers.
//
// Bounded like the other listeners: at most kMaxConnections open at once (a newcomer
// beyond that is closed at once), and a connection must send its request headers within
// a few seconds and its next request soon after the previous reply.
#pragma once

#include <functional>
#include <string>

#include <kj/async-io.h>
#include <kj/compat/http.h>

namespace kvr::net {

class MetricsServer final : private kj::TaskSet::ErrorHandler {
 public:
  using RenderFn = std::function<std::string()>;
  static constexpr uint32_t kMaxConnections = 16;

  // Starts accepting on `receiver` at once.
  MetricsServer(kj::Timer& timer, kj::Own<kj::ConnectionReceiver> receiver, RenderFn render);
  ~MetricsServer() noexcept(false);
  KJ_DISALLOW_COPY(MetricsServer);

  uint getPort() const { return port_; }
  // Stops accepting; open connections finish their request.
  void stopAccepting();

  uint64_t scrapes() const { return scrapes_; }

 private:
  class Service;
  kj::Promise<void> acceptLoop();
  void taskFailed(kj::Exception&& exception) override;

  kj::Timer& timer_;
  kj::Own<kj::ConnectionReceiver> receiver_;
  uint port_;
  RenderFn render_;
  uint32_t open_ = 0;
  uint64_t scrapes_ = 0;
  kj::Own<kj::HttpHeaderTable> headerTable_;
  kj::Own<Service> service_;
  kj::Own<kj::HttpServer> server_;
  kj::Promise<void> accepting_ = nullptr;
  kj::TaskSet connections_;  // last: destroyed first
};

}  // namespace kvr::net
