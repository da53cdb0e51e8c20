// The client library's TLS (Options::tls) as a TlsSetup: shared by ClusterChannel and
// downloadSnapshot. Internal to the client library (not installed).
#pragma once

#include <kj/memory.h>

#include "net/kv_client.h"
#include "net/tls.h"

namespace kvr::client {

// Null when TLS is off (no CA, certificate or key given). Throws kj::Exception with one
// sentence naming kvctl's flag (--cacert, --cert, --key) and the file when one is bad.
kj::Own<net::TlsSetup> makeClientTls(const TlsOptions& tls);

}  // namespace kvr::client
