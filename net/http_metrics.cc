#include "net/http_metrics.h"

#include <kj/debug.h>

#include "net/metrics.h"

namespace kvr::net {

class MetricsServer::Service final : public kj::HttpService {
 public:
  Service(MetricsServer& server, const kj::HttpHeaderTable& table)
      : server_(server), table_(table) {}

  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url,
                            const kj::HttpHeaders& headers, kj::AsyncInputStream& body,
                            Response& response) override {
    (void)headers;
    (void)body;
    if (method != kj::HttpMethod::GET) {
      kj::HttpHeaders out(table_);
      out.add("Allow", "GET");
      return reply(response, 405, "Method Not Allowed", out, "only GET is supported\n");
    }
    std::string path(url.cStr());
    size_t query = path.find('?');
    if (query != std::string::npos) path.resize(query);
    if (path != "/metrics") {
      kj::HttpHeaders out(table_);
      return reply(response, 404, "Not Found", out, "not found; try /metrics\n");
    }
    ++server_.scrapes_;
    kj::HttpHeaders out(table_);
    out.set(kj::HttpHeaderId::CONTENT_TYPE, metrics::kContentType);
    return reply(response, 200, "OK", out, server_.render_());
  }

 private:
  static kj::Promise<void> reply(Response& response, uint status, kj::StringPtr statusText,
                                 kj::HttpHeaders& headers, std::string text) {
    if (headers.get(kj::HttpHeaderId::CONTENT_TYPE) == nullptr) {
      headers.set(kj::HttpHeaderId::CONTENT_TYPE, "text/plain; charset=utf-8");
    }
    auto stream = response.send(status, statusText, headers, uint64_t(text.size()));
    auto body = kj::heapString(text.data(), text.size());
    auto written = stream->write(body.begin(), body.size());
    return written.attach(kj::mv(stream), kj::mv(body));
  }

  MetricsServer& server_;
  const kj::HttpHeaderTable& table_;
};

MetricsServer::MetricsServer(kj::Timer& timer, kj::Own<kj::ConnectionReceiver> receiver,
                             RenderFn render)
    : timer_(timer),
      receiver_(kj::mv(receiver)),
      port_(receiver_->getPort()),
      render_(std::move(render)),
      headerTable_(kj::heap<kj::HttpHeaderTable>()),
      connections_(*this) {
  service_ = kj::heap<Service>(*this, *headerTable_);
  kj::HttpServerSettings settings;
  settings.headerTimeout = 5 * kj::SECONDS;
  settings.pipelineTimeout = 5 * kj::SECONDS;
  server_ = kj::heap<kj::HttpServer>(timer, *headerTable_, *service_, settings);
  accepting_ = acceptLoop().eagerlyEvaluate(nullptr);
}

MetricsServer::~MetricsServer() noexcept(false) { accepting_ = nullptr; }

void MetricsServer::stopAccepting() { accepting_ = nullptr; }

kj::Promise<void> MetricsServer::acceptLoop() {
  return receiver_->accept().then(
      [this](kj::Own<kj::AsyncIoStream> connection) {
        if (open_ < kMaxConnections) {
          ++open_;
          connections_.add(
              server_->listenHttp(kj::mv(connection)).attach(kj::defer([this]() { --open_; })));
        }
        // else: `connection` is dropped here, which closes it.
        return acceptLoop();
      },
      [this](kj::Exception&& e) {
        // E.g. out of file descriptors: keep serving once the pressure is gone.
        KJ_LOG(WARNING, "metrics listener: accept failed; retrying in 1 s", e.getDescription());
        return timer_.afterDelay(1 * kj::SECONDS).then([this]() { return acceptLoop(); });
      });
}

void MetricsServer::taskFailed(kj::Exception&& exception) {
  (void)exception;  // a client went away or sent garbage: its connection is closed
}

}  // namespace kvr::net
