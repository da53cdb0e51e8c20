// kvbench: a closed-loop load generator with the workload shape of etcd's benchmark tool.
//
//   kvbench --endpoints LIST --clients C --conns N --total T [--key-size 8]
//           [--val-size 256] [--key-space K] [--first-key F] [--timeout MS] [--seed S]
//           put|get|mixed [--stale] [--json] [--cacert FILE [--cert FILE --key FILE]]
//           [--tls-server-name NAME]
//
// C logical clients (one session each, one request at a time) share N connections
// (ClusterChannels, one TCP connection per endpoint each) round-robin, and issue T
// requests in total. put writes key F + (i mod K) for the i-th request (F lets a big
// load be split over runs); get reads uniformly
// random keys of [0, K) after writing every one of them first (untimed); mixed is half
// puts, half gets over the same pre-populated key space. Keys are the key index in
// zero-padded decimal, --key-size characters. Every request's latency is taken with the
// monotonic clock from the call to its answer (retries included). A progress bar goes to
// stderr; the summary to stdout; --json adds one JSON object as the last line of stdout.
// Exit status: 0 when every request succeeded, 1 when some failed, 2 on bad usage.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <kj/async-io.h>
#include <kj/debug.h>
#include <kj/vector.h>

#include "core/text.h"
#include "net/kv_client.h"

namespace {

using kvr::client::AsyncKvClient;
using kvr::client::ClusterChannel;
using kvr::client::Options;
using kvr::client::Outcome;
using kvr::client::Result;
using Clock = std::chrono::steady_clock;

[[noreturn]] void usage(const std::string& error) {
  if (!error.empty()) std::fprintf(stderr, "kvbench: %s\n", error.c_str());
  std::fprintf(stderr,
               "usage: kvbench --endpoints HOST:PORT,... --clients C --conns N --total T\n"
               "               [--key-size 8] [--val-size 256] [--key-space K] [--first-key "
               "F]\n"
               "               [--timeout MS] [--seed S] put|get|mixed [--stale] [--json]\n"
               "               [--cacert FILE [--cert FILE --key FILE]] "
               "[--tls-server-name NAME]\n");
  std::exit(2);
}

enum class Mode { Put, Get, Mixed };

struct Flags {
  std::string endpoints;
  uint32_t clients = 1;
  uint32_t conns = 1;
  uint64_t total = 10000;
  uint32_t keySize = 8;
  uint32_t valSize = 256;
  uint64_t keySpace = 0;  // 0: --total
  uint64_t firstKey = 0;
  uint32_t timeoutMs = 5000;
  uint64_t seed = 1;
  Mode mode = Mode::Put;
  bool haveMode = false;
  bool stale = false;
  bool json = false;
  kvr::client::TlsOptions tls;
};

uint64_t parseNumber(const std::string& flag, const char* text) {
  uint64_t v = 0;
  if (kvr::text::parseUnsigned(text, &v) != kvr::text::NumberError::None) {
    usage(flag + " wants a number, got '" + text + "'");
  }
  return v;
}

Flags parse(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--endpoints") f.endpoints = value();
    else if (a == "--clients") f.clients = uint32_t(parseNumber(a, value()));
    else if (a == "--conns") f.conns = uint32_t(parseNumber(a, value()));
    else if (a == "--total") f.total = parseNumber(a, value());
    else if (a == "--key-size") f.keySize = uint32_t(parseNumber(a, value()));
    else if (a == "--val-size") f.valSize = uint32_t(parseNumber(a, value()));
    else if (a == "--key-space") f.keySpace = parseNumber(a, value());
    else if (a == "--first-key") f.firstKey = parseNumber(a, value());
    else if (a == "--timeout") f.timeoutMs = uint32_t(parseNumber(a, value()));
    else if (a == "--seed") f.seed = parseNumber(a, value());
    else if (a == "--stale") f.stale = true;
    else if (a == "--json") f.json = true;
    else if (a == "--cacert") f.tls.caFile = value();
    else if (a == "--cert") f.tls.certFile = value();
    else if (a == "--key") f.tls.keyFile = value();
    else if (a == "--tls-server-name") f.tls.serverName = value();
    else if (a == "-h" || a == "--help") usage("");
    else if (a == "put" || a == "get" || a == "mixed") {
      if (f.haveMode) usage("give one of put, get, mixed");
      f.mode = a == "put" ? Mode::Put : a == "get" ? Mode::Get : Mode::Mixed;
      f.haveMode = true;
    } else {
      usage("unknown argument '" + a + "'");
    }
  }
  if (f.endpoints.empty()) usage("--endpoints is required");
  if (!f.haveMode) usage("give one of put, get, mixed");
  if (f.clients == 0 || f.clients > 100000) usage("--clients must be 1..100000");
  if (f.conns == 0 || f.conns > 1024) usage("--conns must be 1..1024");
  if (f.conns > f.clients) usage("--conns must not exceed --clients");
  if (f.total == 0 || f.total > 100'000'000) usage("--total must be 1..100000000");
  if (f.keySize == 0 || f.keySize > 4096) usage("--key-size must be 1..4096");
  if (f.valSize > 1024 * 1024) usage("--val-size must be at most 1048576");
  if (f.keySpace == 0) f.keySpace = f.total;
  // Keys are zero-padded decimal: K distinct keys need enough digits.
  if (f.keySize < 20) {
    uint64_t room = 1;
    for (uint32_t d = 0; d < f.keySize; ++d) room *= 10;
    if (f.firstKey + f.keySpace > room)
      usage("--key-space does not fit in --key-size decimal digits");
  }
  if (f.stale && f.mode == Mode::Put) usage("--stale applies to get and mixed");
  return f;
}

std::string keyOf(uint64_t index, uint32_t width) {
  std::string digits = std::to_string(index);
  if (digits.size() >= width) return digits;
  return std::string(width - digits.size(), '0') + digits;
}

double msSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// The value at quantile q (0..1) of sorted samples, nearest-rank.
double quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(q * static_cast<double>(sorted.size()));
  if (rank >= sorted.size()) rank = sorted.size() - 1;
  return sorted[rank];
}

// One phase (population or the measured run): C clients, each in a closed loop, until
// `total` requests have been issued.
class Phase {
 public:
  enum class Op { Put, Get };

  Phase(kj::AsyncIoContext& io, kj::Vector<kj::Own<AsyncKvClient>>& clients, const Flags& flags,
        const char* label, uint64_t total, bool populate)
      : io_(io),
        clients_(clients),
        flags_(flags),
        label_(label),
        total_(total),
        populate_(populate),
        rng_(flags.seed),
        value_(flags.valSize, 'v'),
        tty_(isatty(STDERR_FILENO) != 0) {
    latenciesMs_.reserve(total);
  }

  void run() {
    start_ = Clock::now();
    auto loops = kj::heapArrayBuilder<kj::Promise<void>>(clients_.size());
    for (size_t c = 0; c < clients_.size(); ++c) loops.add(loop(c));
    auto progress = showProgress().eagerlyEvaluate(nullptr);
    kj::joinPromises(loops.finish()).wait(io_.waitScope);
    elapsedMs_ = msSince(start_);
    done_ = true;
    drawProgress(true);
  }

  double elapsedMs() const { return elapsedMs_; }
  uint64_t errors() const { return errors_; }
  uint64_t completed() const { return completed_; }
  const std::string& firstError() const { return firstError_; }
  std::vector<double>& latencies() { return latenciesMs_; }

 private:
  kj::Promise<void> loop(size_t c) {
    if (issued_ >= total_) return kj::READY_NOW;
    uint64_t i = issued_++;
    Op op = Op::Put;
    uint64_t key = flags_.firstKey + i % flags_.keySpace;
    if (!populate_ && flags_.mode != Mode::Put) {
      std::uniform_int_distribution<uint64_t> pick(0, flags_.keySpace - 1);
      key = flags_.firstKey + pick(rng_);
      op = flags_.mode == Mode::Get || (rng_() & 1) != 0 ? Op::Get : Op::Put;
    }
    std::string k = keyOf(key, flags_.keySize);
    auto sent = Clock::now();
    auto call = op == Op::Put ? clients_[c]->put(kj::mv(k), value_)
                              : clients_[c]->get(kj::mv(k));
    return call.then([this, c, sent](Result r) {
      latenciesMs_.push_back(msSince(sent));
      ++completed_;
      if (!r.ok()) {
        ++errors_;
        if (firstError_.empty()) {
          firstError_ = std::string(kvr::client::outcomeName(r.outcome)) +
                        (r.error.empty() ? "" : ": " + r.error);
        }
      }
      return loop(c);
    });
  }

  kj::Promise<void> showProgress() {
    return io_.provider->getTimer().afterDelay(200 * kj::MILLISECONDS).then([this]() {
      if (done_) return kj::Promise<void>(kj::READY_NOW);
      drawProgress(false);
      return showProgress();
    });
  }

  // A bar redrawn in place on a terminal; otherwise a line at every tenth of the run.
  void drawProgress(bool final) {
    double t = msSince(start_) / 1000;
    double rate = t > 0 ? double(completed_) / t : 0;
    if (tty_) {
      constexpr int kWidth = 40;
      int filled = int(double(kWidth) * double(completed_) / double(total_));
      std::fprintf(stderr,
                   "\r%-8s [%.*s%*s] %" PRIu64 "/%" PRIu64 " %.0f req/s %" PRIu64 " errors%s",
                   label_, filled, "########################################", kWidth - filled,
                   "", completed_, total_, rate, errors_, final ? "\n" : "");
      return;
    }
    uint64_t tenth = completed_ * 10 / total_;
    if (final || tenth > lastTenth_) {
      lastTenth_ = tenth;
      std::fprintf(stderr, "%s: %" PRIu64 "/%" PRIu64 " (%.0f req/s, %" PRIu64 " errors)\n",
                   label_, completed_, total_, rate, errors_);
    }
  }

  kj::AsyncIoContext& io_;
  kj::Vector<kj::Own<AsyncKvClient>>& clients_;
  const Flags& flags_;
  const char* label_;
  uint64_t total_;
  bool populate_;
  std::mt19937_64 rng_;
  std::string value_;
  bool tty_;
  Clock::time_point start_;
  double elapsedMs_ = 0;
  bool done_ = false;
  uint64_t issued_ = 0, completed_ = 0, errors_ = 0, lastTenth_ = 0;
  std::string firstError_;
  std::vector<double> latenciesMs_;
};

const char* modeName(const Flags& f) {
  switch (f.mode) {
    case Mode::Put: return "put";
    case Mode::Get: return f.stale ? "get (stale)" : "get (linearizable)";
    case Mode::Mixed: return f.stale ? "mixed (stale gets)" : "mixed";
  }
  return "?";
}

int run(const Flags& f) {
  auto io = kj::setupAsyncIo();
  Options options;
  options.timeoutMs = f.timeoutMs;
  options.stale = f.stale;
  options.tls = f.tls;
  auto endpoints = kvr::client::parseEndpointList(f.endpoints);
  kj::Vector<kj::Own<ClusterChannel>> channels;
  for (uint32_t n = 0; n < f.conns; ++n) {
    channels.add(
        kj::heap<ClusterChannel>(*io.provider, io.provider->getTimer(), endpoints, options));
  }
  kj::Vector<kj::Own<AsyncKvClient>> clients;
  for (uint32_t c = 0; c < f.clients; ++c) {
    clients.add(kj::heap<AsyncKvClient>(*channels[c % f.conns]));
  }

  // Untimed setup: connect and open every client's session (get needs them to populate).
  {
    auto opens = kj::heapArrayBuilder<kj::Promise<Result>>(clients.size());
    for (auto& c : clients) opens.add(c->openSession());
    for (auto& r : kj::joinPromises(opens.finish()).wait(io.waitScope)) {
      if (!r.ok()) {
        std::fprintf(stderr, "kvbench: %s\n", r.error.c_str());
        return 1;
      }
    }
  }
  if (f.mode != Mode::Put) {
    Phase populate(io, clients, f, "populate", f.keySpace, true);
    populate.run();
    if (populate.errors() > 0) {
      std::fprintf(stderr, "kvbench: populating the key space failed %" PRIu64 " times: %s\n",
                   populate.errors(), populate.firstError().c_str());
      return 1;
    }
  }

  Phase bench(io, clients, f, modeName(f), f.total, false);
  bench.run();
  auto& lat = bench.latencies();
  std::sort(lat.begin(), lat.end());
  double rps = bench.elapsedMs() > 0 ? double(bench.completed()) * 1000 / bench.elapsedMs() : 0;
  double p50 = quantile(lat, 0.50), p90 = quantile(lat, 0.90), p99 = quantile(lat, 0.99),
         p999 = quantile(lat, 0.999), max = lat.empty() ? 0 : lat.back();
  double sum = 0;
  for (double x : lat) sum += x;
  double mean = lat.empty() ? 0 : sum / double(lat.size());

  std::printf("Summary: %s, %u clients over %u connections, key %u B, value %u B, key space "
              "%" PRIu64 "\n",
              modeName(f), f.clients, f.conns, f.keySize, f.valSize, f.keySpace);
  std::printf("  Total:      %" PRIu64 " requests in %.3f s\n", bench.completed(),
              bench.elapsedMs() / 1000);
  std::printf("  Requests/s: %.1f\n", rps);
  std::printf("  Latency:    mean %.3f ms  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f "
              "ms\n",
              mean, p50, p90, p99, p999, max);
  std::printf("  Errors:     %" PRIu64 "%s%s\n", bench.errors(),
              bench.errors() > 0 ? " (first: " : "",
              bench.errors() > 0 ? (bench.firstError() + ")").c_str() : "");
  if (f.json) {
    std::printf("{\"rps\":%.1f,\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
                "\"p999\":%.3f,\"max\":%.3f,\"mean\":%.3f},\"errors\":%" PRIu64
                ",\"total\":%" PRIu64 ",\"seconds\":%.3f,\"clients\":%u,\"conns\":%u}\n",
                rps, p50, p90, p99, p999, max, mean, bench.errors(), bench.completed(),
                bench.elapsedMs() / 1000, f.clients, f.conns);
  }
  std::fflush(stdout);
  return bench.errors() == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Flags f = parse(argc, argv);
  int code = 2;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { code = run(f); })) {
    std::fprintf(stderr, "kvbench: %s\n", e->getDescription().cStr());
    return 2;
  }
  return code;
}
