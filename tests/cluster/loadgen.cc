// loadgen: the cluster tests' write load and its verification, on the async client API.
//
//   loadgen write  --endpoints E --out FILE [--clients N] [--channels C] [--duration-ms D]
//                  [--max-writes M] [--stop-file F] [--timeout MS] [--prefix P]
//                  [--value-bytes B]
//   loadgen verify --endpoints E --in FILE [--concurrency N] [--timeout MS] [--value-bytes B]
//
// write: N logical clients (one session each, one write at a time) spread over C
// channels put unique keys until the duration, the write count or the stop file ends the
// run. Every outcome is appended to FILE at once (so a crash of the test still leaves
// it), one line each, times in ms since the Unix epoch:
//     ack <sent> <acked> <key> <value>
//     err <sent> <failed> <key> <message>
// verify: reads every acknowledged write of FILE back (linearizable get) and exits 0 only
// if each one holds its value. --value-bytes pads each value to B bytes with 'x' (the
// file keeps the unpadded value; verify pads it the same way).
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <kj/async-io.h>
#include <kj/debug.h>
#include <kj/vector.h>

#include "net/kv_client.h"

namespace {

using kvr::client::AsyncKvClient;
using kvr::client::ClusterChannel;
using kvr::client::Options;
using kvr::client::Result;

double nowMs() {
  using namespace std::chrono;
  return duration<double, std::milli>(system_clock::now().time_since_epoch()).count();
}

[[noreturn]] void die(const std::string& m) {
  std::fprintf(stderr, "loadgen: %s\n", m.c_str());
  std::exit(2);
}

struct Flags {
  std::string mode;
  std::string endpoints;
  std::string out, in, stopFile, prefix = "k";
  uint32_t clients = 8, channels = 2, concurrency = 32;
  uint64_t durationMs = 0, maxWrites = 0;
  uint32_t timeoutMs = 10000;
  size_t valueBytes = 0;
};

Flags parse(int argc, char** argv) {
  Flags f;
  if (argc < 2) die("usage: loadgen write|verify --endpoints E ...");
  f.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string k = argv[i];
    if (i + 1 >= argc) die(k + " needs a value");
    std::string v = argv[++i];
    auto num = [&]() { return std::strtoull(v.c_str(), nullptr, 10); };
    if (k == "--endpoints") f.endpoints = v;
    else if (k == "--out") f.out = v;
    else if (k == "--in") f.in = v;
    else if (k == "--stop-file") f.stopFile = v;
    else if (k == "--prefix") f.prefix = v;
    else if (k == "--clients") f.clients = uint32_t(num());
    else if (k == "--channels") f.channels = uint32_t(num());
    else if (k == "--concurrency") f.concurrency = uint32_t(num());
    else if (k == "--duration-ms") f.durationMs = num();
    else if (k == "--max-writes") f.maxWrites = num();
    else if (k == "--timeout") f.timeoutMs = uint32_t(num());
    else if (k == "--value-bytes") f.valueBytes = num();
    else die("unknown flag " + k);
  }
  if (f.endpoints.empty()) die("--endpoints is required");
  if (f.clients == 0 || f.channels == 0 || f.concurrency == 0) die("counts must be > 0");
  if (f.valueBytes > (1u << 20)) die("--value-bytes is over 1 MiB");
  return f;
}

// The value stored for `tag`: the tag padded with 'x' to the requested size.
std::string padded(const std::string& tag, size_t bytes) {
  return tag.size() >= bytes ? tag : tag + std::string(bytes - tag.size(), 'x');
}

// One line per line: no spaces or newlines in what we print.
std::string oneLine(std::string s) {
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

class Writer {
 public:
  Writer(const Flags& f, kj::AsyncIoContext& io) : flags_(f), io_(io) {
    out_ = std::fopen(f.out.c_str(), "a");
    if (out_ == nullptr) die("cannot open " + f.out);
    Options o;
    o.timeoutMs = f.timeoutMs;
    auto endpoints = kvr::client::parseEndpointList(f.endpoints);
    for (uint32_t c = 0; c < f.channels; ++c) {
      channels_.add(
          kj::heap<ClusterChannel>(*io.provider, io.provider->getTimer(), endpoints, o));
    }
    for (uint32_t c = 0; c < f.clients; ++c) {
      clients_.add(kj::heap<AsyncKvClient>(*channels_[c % f.channels]));
    }
  }
  ~Writer() { std::fclose(out_); }

  void run() {
    start_ = nowMs();
    auto all = kj::heapArrayBuilder<kj::Promise<void>>(clients_.size());
    for (size_t c = 0; c < clients_.size(); ++c) all.add(loop(c, 0));
    auto watch = watchStop().eagerlyEvaluate(nullptr);
    kj::joinPromises(all.finish()).wait(io_.waitScope);
    std::fprintf(stderr, "loadgen: %llu acknowledged, %llu failed in %.0f ms\n",
                 static_cast<unsigned long long>(acked_),
                 static_cast<unsigned long long>(failed_), nowMs() - start_);
  }

 private:
  kj::Promise<void> watchStop() {
    return io_.provider->getTimer().afterDelay(20 * kj::MILLISECONDS).then([this]() {
      struct stat st;
      if (flags_.durationMs != 0 && nowMs() - start_ >= double(flags_.durationMs)) stop_ = true;
      if (!flags_.stopFile.empty() && ::stat(flags_.stopFile.c_str(), &st) == 0) stop_ = true;
      if (stop_) return kj::Promise<void>(kj::READY_NOW);
      return watchStop();
    });
  }

  kj::Promise<void> loop(size_t c, uint64_t seq) {
    if (stop_ || (flags_.maxWrites != 0 && issued_ >= flags_.maxWrites)) return kj::READY_NOW;
    ++issued_;
    std::string key = flags_.prefix + "c" + std::to_string(c) + "-" + std::to_string(seq);
    std::string value = "v" + std::to_string(seq) + "-" + std::to_string(c);
    double sent = nowMs();
    return clients_[c]
        ->put(key, padded(value, flags_.valueBytes))
        .then([this, c, seq, key, value, sent](Result r) {
          double done = nowMs();
          if (r.ok()) {
            ++acked_;
            std::fprintf(out_, "ack %.3f %.3f %s %s\n", sent, done, key.c_str(), value.c_str());
          } else {
            ++failed_;
            std::fprintf(out_, "err %.3f %.3f %s %s\n", sent, done, key.c_str(),
                         oneLine(r.error).c_str());
          }
          std::fflush(out_);
          return loop(c, seq + 1);
        });
  }

  const Flags& flags_;
  kj::AsyncIoContext& io_;
  FILE* out_;
  kj::Vector<kj::Own<ClusterChannel>> channels_;
  kj::Vector<kj::Own<AsyncKvClient>> clients_;
  double start_ = 0;
  bool stop_ = false;
  uint64_t issued_ = 0, acked_ = 0, failed_ = 0;
};

struct Expected {
  std::string key, value;
};

int verify(const Flags& f, kj::AsyncIoContext& io) {
  std::ifstream in(f.in);
  if (!in) die("cannot open " + f.in);
  std::vector<Expected> want;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream s(line);
    std::string tag, sent, acked;
    Expected e;
    if (!(s >> tag >> sent >> acked >> e.key >> e.value)) continue;  // a torn last line
    if (tag == "ack") want.push_back(e);
  }
  Options o;
  o.timeoutMs = f.timeoutMs;
  ClusterChannel channel(*io.provider, io.provider->getTimer(),
                         kvr::client::parseEndpointList(f.endpoints), o);
  AsyncKvClient client(channel);
  size_t bad = 0;
  for (size_t first = 0; first < want.size(); first += f.concurrency) {
    size_t n = std::min<size_t>(f.concurrency, want.size() - first);
    auto gets = kj::heapArrayBuilder<kj::Promise<Result>>(n);
    for (size_t k = 0; k < n; ++k) gets.add(client.get(want[first + k].key));
    auto results = kj::joinPromises(gets.finish()).wait(io.waitScope);
    for (size_t k = 0; k < n; ++k) {
      const Expected& e = want[first + k];
      const Result& r = results[k];
      if (r.ok() && r.value == padded(e.value, f.valueBytes)) continue;
      if (++bad <= 10) {
        std::fprintf(stderr, "loadgen: LOST acknowledged write %s=%s: got %s %s\n",
                     e.key.c_str(), e.value.c_str(), kvr::client::outcomeName(r.outcome),
                     r.ok() ? r.value.c_str() : r.error.c_str());
      }
    }
  }
  std::printf("verified %zu acknowledged writes, %zu missing or wrong\n", want.size(), bad);
  return bad == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Flags f = parse(argc, argv);
  int code = 2;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                auto io = kj::setupAsyncIo();
                if (f.mode == "write") {
                  if (f.out.empty()) die("write needs --out");
                  Writer w(f, io);
                  w.run();
                  code = 0;
                } else if (f.mode == "verify") {
                  if (f.in.empty()) die("verify needs --in");
                  code = verify(f, io);
                } else {
                  die("unknown mode " + f.mode);
                }
              })) {
    die(e->getDescription().cStr());
  }
  return code;
}
