// TLS for the node's listeners and peer connections and for the client library, on
// kj-tls (OpenSSL underneath). Only I/O code uses it: core/, sim/ and disk/ know nothing
// of TLS.
//
// Trust is the CA file alone (never the system's trust store): a node or client accepts
// a certificate only if that CA signed it. Every file is read and checked when the
// context is made, so a bad file is one clear error at start, not a failed handshake
// later: unreadable, not PEM, a key that does not match its certificate, a certificate
// that has expired or is not valid yet.
#pragma once

#include <cstdint>
#include <string>

#include <kj/async-io.h>
#include <kj/compat/tls.h>

namespace kvr::net {

struct TlsFiles {
  std::string certFile;  // PEM certificate (chain allowed, leaf first); "" = none
  std::string keyFile;   // PEM private key of certFile, unencrypted
  std::string caFile;    // PEM certificate(s) of the CA(s) to trust
  // The flag names to use in error messages ("--tls-cert" for kvnode, "--cert" for kvctl).
  std::string certFlag = "--tls-cert";
  std::string keyFlag = "--tls-key";
  std::string caFlag = "--tls-ca";
};

// The first byte of every TLS connection (a handshake record). A plaintext Cap'n Proto
// connection starts with its first message's segment count minus one, a little-endian
// u32: 0 for the one-segment Bootstrap or call a client opens with.
constexpr uint8_t kTlsHandshakeRecordType = 0x16;

// One sentence on what went wrong in a handshake, from kj's/OpenSSL's exception text
// ("OpenSSL error; message = error:0A000086:SSL routines::certificate verify failed"
// becomes "certificate verify failed", plus a hint where OpenSSL's words are cryptic).
std::string describeTlsFailure(const kj::Exception& e);

// Whether `e` is a TLS failure (a failed handshake, or an OpenSSL error on the stream,
// such as the alert a server sends after a TLS 1.3 handshake when it refuses our
// certificate): a configuration problem that retrying does not fix.
bool isTlsFailure(const kj::Exception& e);

// A kj::TlsContext with the material it was made from (kj keeps references to it).
class TlsSetup {
 public:
  // `requireClientCert`: as a server, demand a certificate signed by the CA (mutual TLS).
  // Throws kj::Exception with one sentence naming the flag, the file and the problem.
  // A certificate is required when `requireCert` (servers); a client may go without.
  TlsSetup(const TlsFiles& files, bool requireCert, bool requireClientCert);
  ~TlsSetup() noexcept(false);
  KJ_DISALLOW_COPY(TlsSetup);

  kj::TlsContext& context() { return *context_; }
  bool hasCertificate() const { return keypair_.get() != nullptr; }
  // The certificate's subject and validity, for the start-up log line.
  const std::string& summary() const { return summary_; }

  // describeTlsFailure(), where knowing whether we presented a certificate helps: with
  // TLS 1.3 a server that refuses a client's certificate (or its absence) often shows
  // only as a session ended under the client's first write.
  std::string explain(const kj::Exception& e) const;

  // Client side: the TLS handshake over `stream` to the node at `address` (HOST:PORT),
  // whose certificate must name `serverName`, or, if that is empty, HOST. Rejects with
  // "TLS handshake with ADDRESS failed: WHY".
  kj::Promise<kj::Own<kj::AsyncIoStream>> connect(kj::Own<kj::AsyncIoStream> stream,
                                                  const std::string& address,
                                                  const std::string& serverName);

 private:
  kj::Own<kj::TlsKeypair> keypair_;
  kj::Array<kj::TlsCertificate> trusted_;
  kj::Own<kj::TlsContext> context_;
  std::string summary_;
};

// HOST of "HOST:PORT" ("[::1]:7001" gives "::1").
std::string hostOf(const std::string& address);

}  // namespace kvr::net
