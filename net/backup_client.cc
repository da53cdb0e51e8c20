#include "net/backup_client.h"

#include <algorithm>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include "net/client_tls.h"
#include "schemas/kv.capnp.h"

namespace kvr::client {

namespace {

bool transient(schema::Status s) {
  return s == schema::Status::NOT_LEADER || s == schema::Status::TIMEOUT ||
         s == schema::Status::BUSY || s == schema::Status::TRANSFER_IN_PROGRESS ||
         s == schema::Status::SHUTTING_DOWN;
}

std::string describeBackupFailure(const kj::Exception& e) {
  if (net::isTlsFailure(e)) return net::describeTlsFailure(e);
  std::string text(e.getDescription().cStr());
  const std::string remote = "remote exception: ";
  if (text.rfind(remote, 0) == 0) text.erase(0, remote.size());
  if (text.size() > 300) text.resize(300);
  return text;
}

}  // namespace

SnapshotDownload downloadSnapshot(const std::vector<std::string>& endpoints,
                                  const Options& options, uint32_t chunkBytes,
                                  const std::function<void(uint64_t, uint64_t)>& progress) {
  KJ_REQUIRE(!endpoints.empty() && chunkBytes > 0);
  kj::Own<net::TlsSetup> tls = makeClientTls(options.tls);
  auto io = kj::setupAsyncIo();
  kj::Timer& timer = io.provider->getTimer();
  const kj::Duration timeout = options.timeoutMs * kj::MILLISECONDS;
  const kj::TimePoint deadline = timer.now() + timeout;
  SnapshotDownload out;
  std::string lastError = "no endpoint tried";
  uint32_t backoffMs = 20;
  bool timedOut = true;
  for (size_t attempt = 0;; ++attempt) {
    if (attempt > 0 && attempt % endpoints.size() == 0) {
      // Every endpoint failed once more: pause before the next round.
      if (timer.now() + backoffMs * kj::MILLISECONDS >= deadline) break;
      timer.afterDelay(backoffMs * kj::MILLISECONDS).wait(io.waitScope);
      backoffMs = std::min<uint32_t>(backoffMs * 2, 500);
    }
    if (timer.now() >= deadline) break;
    const std::string& endpoint = endpoints[attempt % endpoints.size()];
    const kj::Duration remaining = deadline - timer.now();
    bool retry = true;
    bool streaming = false;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                  auto address = io.provider->getNetwork()
                                     .parseAddress(endpoint.c_str())
                                     .wait(io.waitScope);
                  auto connecting = address->connect().then(
                      [&](kj::Own<kj::AsyncIoStream> plain)
                          -> kj::Promise<kj::Own<kj::AsyncIoStream>> {
                        if (tls.get() == nullptr) return kj::mv(plain);
                        return tls->connect(kj::mv(plain), endpoint, options.tls.serverName);
                      });
                  kj::Own<kj::AsyncIoStream> stream =
                      timer
                          .timeoutAfter(std::min(remaining,
                                                 options.attemptTimeoutMs * kj::MILLISECONDS),
                                        kj::mv(connecting))
                          .wait(io.waitScope);
                  capnp::TwoPartyClient rpc(*stream);
                  auto service = rpc.bootstrap().castAs<schema::KvService>();
                  auto response = timer
                                      .timeoutAfter(remaining, service.snapshotRequest().send())
                                      .wait(io.waitScope);
                  auto reply = response.getReply();
                  if (reply.getStatus() != schema::Status::OK) {
                    lastError = endpoint + ": " + reply.getError().cStr();
                    retry = transient(reply.getStatus());
                    return;
                  }
                  auto info = response.getInfo();
                  out.endpoint = endpoint;
                  out.clusterId = info.getClusterId();
                  out.nodeId = info.getNodeId();
                  out.index = info.getIndex();
                  out.term = info.getTerm();
                  const uint64_t size = info.getSize();
                  auto source = response.getStream();
                  streaming = true;
                  out.data.clear();
                  out.data.reserve(static_cast<size_t>(size));
                  while (out.data.size() < size) {
                    auto request = source.readRequest();
                    request.setOffset(out.data.size());
                    request.setMaxBytes(chunkBytes);
                    auto chunk = timer.timeoutAfter(timeout, request.send()).wait(io.waitScope);
                    auto bytes = chunk.getData();
                    if (bytes.size() == 0) {
                      lastError = endpoint + ": the snapshot stream ended at byte " +
                                  std::to_string(out.data.size()) + " of " +
                                  std::to_string(size);
                      retry = false;
                      return;
                    }
                    out.data.append(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
                    if (progress) progress(out.data.size(), size);
                  }
                  out.ok = true;
                })) {
      lastError = endpoint + ": " +
                  (tls.get() != nullptr && net::isTlsFailure(*e) ? tls->explain(*e)
                                                                 : describeBackupFailure(*e));
      if (net::isTlsFailure(*e)) retry = false;  // a certificate mismatch stays one
      if (streaming) {
        lastError = "reading the snapshot from " + lastError;
        retry = false;
      }
    }
    if (out.ok) return out;
    if (!retry) {
      timedOut = false;
      break;
    }
  }
  out = SnapshotDownload{};
  out.error = timedOut ? "no node served a snapshot within " +
                             std::to_string(options.timeoutMs) + " ms (last: " + lastError + ")"
                       : lastError;
  return out;
}

}  // namespace kvr::client
