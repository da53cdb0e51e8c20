// Built by check_install.sh against the installed client library only:
//   c++ client_example.cc $(pkg-config --cflags --libs kvraft-client)
// Writes, reads and compares-and-swaps one key on the endpoints given as argv[1].
#include <cstdio>

#include "net/kv_client.h"

using namespace kvr::client;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: client_example HOST:PORT[,HOST:PORT...]\n");
    return 2;
  }
  Options options;
  options.timeoutMs = 10000;  // the node may still be electing itself
  KvClient kv(parseEndpointList(argv[1]), options);
  Result put = kv.put("greeting", "hello");
  if (!put.ok()) {
    std::fprintf(stderr, "put: %s\n", put.error.c_str());
    return 1;
  }
  Result get = kv.get("greeting");
  if (!get.ok() || get.value != "hello") {
    std::fprintf(stderr, "get: %s %s\n", outcomeName(get.outcome), get.error.c_str());
    return 1;
  }
  Result cas = kv.cas("greeting", "nope", "hi");
  if (cas.outcome != Outcome::CasMismatch || cas.value != "hello") {
    std::fprintf(stderr, "cas: expected a mismatch, got %s\n", outcomeName(cas.outcome));
    return 1;
  }
  std::printf("client_example: put, get and cas ok (applied at index %llu)\n",
              static_cast<unsigned long long>(put.index));
  return 0;
}
