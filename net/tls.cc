#include "net/tls.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <vector>

#include <kj/debug.h>

namespace kvr::net {
namespace {

// Certificates and keys are small; anything bigger is not one.
constexpr size_t kMaxPemFileBytes = 1 << 20;
constexpr const char* kTlsHandshakeFailedPrefix = "TLS handshake with ";
// kj's words when the other side ends the TLS session under a write: with TLS 1.3, how a
// server's refusal of our certificate shows when we write before reading its alert.
constexpr const char* kTlsEndedDuringWrite = "ssl connection ended during write";
// CA certificates taken from one --tls-ca file.
constexpr size_t kMaxCaCertificates = 64;

[[noreturn]] void fail(const std::string& flag, const std::string& file,
                       const std::string& why) {
  kj::throwFatalException(
      KJ_EXCEPTION(FAILED, kj::str(flag.c_str(), " ", file.c_str(), ": ", why.c_str())));
}

std::string readPemFile(const std::string& flag, const std::string& file) {
  FILE* f = std::fopen(file.c_str(), "rb");
  if (f == nullptr) fail(flag, file, std::string("cannot read it: ") + std::strerror(errno));
  std::string data;
  char buf[16384];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
    data.append(buf, n);
    if (data.size() > kMaxPemFileBytes) {
      std::fclose(f);
      fail(flag, file,
           "more than " + std::to_string(kMaxPemFileBytes) + " bytes: not a PEM file");
    }
  }
  int error = std::ferror(f) != 0 ? errno : 0;  // before fclose can change errno
  std::fclose(f);
  if (error != 0) fail(flag, file, std::string("cannot read it: ") + std::strerror(error));
  return data;
}

// OpenSSL's queued errors, as one line (and the queue cleared).
std::string opensslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char text[256];
    ERR_error_string_n(e, text, sizeof text);
    if (!out.empty()) out += "; ";
    out += text;
  }
  return out;
}

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct StoreFree {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* c) const { X509_STORE_CTX_free(c); }
};
struct StackFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_free(s); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

std::unique_ptr<BIO, BioFree> memoryBio(const std::string& data) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(data.data(), int(data.size())));
}

// Every certificate in a PEM text, in order (at most `max`); none if it holds none.
std::vector<X509Ptr> parseCertificates(const std::string& pem, size_t max) {
  std::vector<X509Ptr> out;
  auto bio = memoryBio(pem);
  while (out.size() < max) {
    X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (x == nullptr) break;
    out.emplace_back(x);
  }
  ERR_clear_error();  // the read past the last certificate always "fails"
  return out;
}

std::string formatTime(const ASN1_TIME* t) {
  struct tm tm {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return "an unreadable date";
  char text[64];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return text;
}

std::string subjectOf(X509* x) {
  char text[256];
  X509_NAME_oneline(X509_get_subject_name(x), text, sizeof text);
  return text;
}

// Refuses a certificate outside its validity period, saying when it was valid.
void checkValidity(const std::string& flag, const std::string& file, X509* x) {
  const ASN1_TIME* notBefore = X509_get0_notBefore(x);
  const ASN1_TIME* notAfter = X509_get0_notAfter(x);
  if (X509_cmp_current_time(notAfter) <= 0) {
    fail(flag, file, "the certificate " + subjectOf(x) + " expired on " + formatTime(notAfter));
  }
  if (X509_cmp_current_time(notBefore) >= 0) {
    fail(flag, file,
         "the certificate " + subjectOf(x) + " is not valid until " + formatTime(notBefore));
  }
}

// Our own certificate must chain to the CA we give our peers, or they will refuse it:
// say so at start rather than in every handshake.
void checkSignedBy(const TlsFiles& files, const std::vector<X509Ptr>& chain,
                   const std::vector<X509Ptr>& cas) {
  std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
  for (const auto& ca : cas) X509_STORE_add_cert(store.get(), ca.get());
  std::unique_ptr<STACK_OF(X509), StackFree> intermediates(sk_X509_new_null());
  for (size_t i = 1; i < chain.size(); ++i) sk_X509_push(intermediates.get(), chain[i].get());
  std::unique_ptr<X509_STORE_CTX, StoreCtxFree> ctx(X509_STORE_CTX_new());
  if (store == nullptr || intermediates == nullptr || ctx == nullptr ||
      X509_STORE_CTX_init(ctx.get(), store.get(), chain[0].get(), intermediates.get()) != 1) {
    fail(files.certFlag, files.certFile, "cannot check it: " + opensslErrors());
  }
  if (X509_verify_cert(ctx.get()) != 1) {
    int error = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    fail(files.certFlag, files.certFile,
         "the certificate " + subjectOf(chain[0].get()) + " does not chain to " + files.caFlag +
             " " + files.caFile + ": " + X509_verify_cert_error_string(error));
  }
}

kj::TlsCertificate toKj(X509* x) {
  int size = i2d_X509(x, nullptr);
  KJ_REQUIRE(size > 0, "cannot encode a certificate", opensslErrors().c_str());
  auto der = kj::heapArray<kj::byte>(size_t(size));
  kj::byte* out = der.begin();
  i2d_X509(x, &out);
  return kj::TlsCertificate(der.asPtr().asConst());
}

// Turns OpenSSL's words into what an operator should check.
struct Hint {
  const char* says;
  const char* means;
};
constexpr Hint kHints[] = {
    {"wrong version number", "the other side does not speak TLS (a plaintext port?)"},
    {"packet length too long", "the other side does not speak TLS (a plaintext port?)"},
    {"http request", "the other side does not speak TLS"},
    {"unexpected message", "the other side does not follow the TLS handshake"},
    {"unexpected eof while reading", "the connection closed during the TLS handshake"},
    {"peer did not return a certificate",
     "the client presented no certificate, and this port requires one"},
    {"certificate required",
     "the server requires a client certificate (give one: kvctl --cert/--key)"},
    {"alert unknown ca", "the other side does not trust our certificate (unknown CA)"},
    {"alert bad certificate", "the other side refused our certificate"},
    {"alert certificate expired", "the other side says our certificate has expired"},
    {"certificate verify failed",
     "the other side's certificate did not verify (not signed by our CA, expired, or not "
     "valid for this use)"},
};

}  // namespace

std::string describeTlsFailure(const kj::Exception& e) {
  std::string text(e.getDescription().cStr());
  std::string why = text;
  // kj: "TLS peer's certificate is not trusted; reason = certificate has expired"
  size_t reason = text.find("reason = ");
  if (reason != std::string::npos) {
    why = "the other side's certificate is not trusted: " + text.substr(reason + 9);
    for (const char* unknownCa : {"local issuer", "self-signed", "self signed"}) {
      if (why.find(unknownCa) != std::string::npos) {
        why += " (it is not signed by the CA we trust)";
        break;
      }
    }
  } else if (text.find(kTlsEndedDuringWrite) != std::string::npos) {
    why = "the other side ended the TLS session at once (does it refuse our certificate, or "
          "require one?)";
  } else if (size_t routines = text.find("routines::"); routines != std::string::npos) {
    // kj: "OpenSSL error; message = error:0A000086:SSL routines::certificate verify failed"
    why = text.substr(routines + 10);
    size_t end = why.find_first_of("\n;");
    if (end != std::string::npos) why.resize(end);
    for (const Hint& h : kHints) {
      if (why.find(h.says) != std::string::npos) {
        why = std::string(h.means) + " [" + why + "]";
        break;
      }
    }
  }
  if (why.size() > 300) why.resize(300);
  return why;
}

bool isTlsFailure(const kj::Exception& e) {
  kj::StringPtr text = e.getDescription();
  return text.startsWith(kTlsHandshakeFailedPrefix) || strstr(text.cStr(), "SSL routines::") ||
         strstr(text.cStr(), "TLS peer's certificate") ||
         strstr(text.cStr(), kTlsEndedDuringWrite);
}

std::string hostOf(const std::string& address) {
  size_t colon = address.rfind(':');
  std::string host = colon == std::string::npos ? address : address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return host;
}

TlsSetup::TlsSetup(const TlsFiles& files, bool requireCert, bool requireClientCert) {
  KJ_REQUIRE(!files.caFile.empty(), "TLS needs a CA file");
  std::string caPem = readPemFile(files.caFlag, files.caFile);
  std::vector<X509Ptr> cas = parseCertificates(caPem, kMaxCaCertificates + 1);
  if (cas.empty()) fail(files.caFlag, files.caFile, "holds no PEM certificate");
  if (cas.size() > kMaxCaCertificates) {
    fail(files.caFlag, files.caFile,
         "holds more than " + std::to_string(kMaxCaCertificates) + " certificates");
  }
  auto trusted = kj::heapArrayBuilder<kj::TlsCertificate>(cas.size());
  for (const auto& ca : cas) trusted.add(toKj(ca.get()));
  trusted_ = trusted.finish();

  if (files.certFile.empty() != files.keyFile.empty()) {
    std::string missing = files.certFile.empty() ? files.certFlag : files.keyFlag;
    kj::throwFatalException(
        KJ_EXCEPTION(FAILED, kj::str(files.certFlag.c_str(), " and ", files.keyFlag.c_str(),
                                     " go together: ", missing.c_str(), " is missing")));
  }
  if (requireCert && files.certFile.empty()) {
    kj::throwFatalException(KJ_EXCEPTION(FAILED, kj::str("TLS needs ", files.certFlag.c_str(),
                                                         " and ", files.keyFlag.c_str())));
  }
  if (!files.certFile.empty()) {
    std::string certPem = readPemFile(files.certFlag, files.certFile);
    std::vector<X509Ptr> chain = parseCertificates(certPem, 10);
    if (chain.empty()) fail(files.certFlag, files.certFile, "holds no PEM certificate");
    checkValidity(files.certFlag, files.certFile, chain[0].get());
    if (requireCert) checkSignedBy(files, chain, cas);

    std::string keyPem = readPemFile(files.keyFlag, files.keyFile);
    auto keyBio = memoryBio(keyPem);
    // No password: an encrypted key is refused, never prompted for on a terminal.
    auto noPassword = [](char*, int, int, void*) { return 0; };
    std::unique_ptr<EVP_PKEY, KeyFree> key(
        PEM_read_bio_PrivateKey(keyBio.get(), nullptr, noPassword, nullptr));
    if (key == nullptr) {
      ERR_clear_error();
      fail(files.keyFlag, files.keyFile, "holds no unencrypted PEM private key");
    }
    if (X509_check_private_key(chain[0].get(), key.get()) != 1) {
      ERR_clear_error();
      fail(files.keyFlag, files.keyFile,
           "does not match the certificate in " + files.certFlag + " " + files.certFile);
    }
    keypair_ = kj::heap<kj::TlsKeypair>(
        kj::TlsKeypair{kj::TlsPrivateKey(keyPem.c_str()), kj::TlsCertificate(certPem.c_str())});
    summary_ = subjectOf(chain[0].get()) + ", valid until " +
               formatTime(X509_get0_notAfter(chain[0].get()));
  }

  kj::TlsContext::Options options;
  options.useSystemTrustStore = false;  // only our CA vouches for nodes and clients
  options.verifyClients = requireClientCert;
  options.trustedCertificates = trusted_;
  options.minVersion = kj::TlsVersion::TLS_1_2;
  if (keypair_.get() != nullptr) options.defaultKeypair = *keypair_;
  context_ = kj::heap<kj::TlsContext>(kj::mv(options));
}

TlsSetup::~TlsSetup() noexcept(false) {}

std::string TlsSetup::explain(const kj::Exception& e) const {
  if (!strstr(e.getDescription().cStr(), kTlsEndedDuringWrite)) return describeTlsFailure(e);
  return hasCertificate()
             ? "the other side refused our certificate (it ended the TLS session right after "
               "the handshake: does the CA it trusts sign our certificate?)"
             : "the other side requires a client certificate (it ended the TLS session right "
               "after the handshake; give one: kvctl --cert FILE --key FILE)";
}

kj::Promise<kj::Own<kj::AsyncIoStream>> TlsSetup::connect(kj::Own<kj::AsyncIoStream> stream,
                                                          const std::string& address,
                                                          const std::string& serverName) {
  std::string name = serverName.empty() ? hostOf(address) : serverName;
  auto handshake = context_->wrapClient(kj::mv(stream), name.c_str());
  return handshake.catch_([address, name](kj::Exception&& e) -> kj::Own<kj::AsyncIoStream> {
    std::string why = describeTlsFailure(e);
    if (why.find("hostname mismatch") != std::string::npos) {
      // kj checks the name against the certificate's DNS names only, never its IP entries.
      bool ip = name.find_first_not_of("0123456789.") == std::string::npos ||
                name.find(':') != std::string::npos;
      why = "its certificate does not carry the name '" + name + "' as a DNS name" +
            (ip ? " (an IP address must appear as DNS:" + name + " too, not only as IP:; " +
                      "or give a DNS name it carries with --tls-server-name)"
                : " (give one it carries with --tls-server-name)");
    }
    kj::throwFatalException(
        KJ_EXCEPTION(DISCONNECTED, kj::str(kTlsHandshakeFailedPrefix, address.c_str(),
                                           " failed: ", why.c_str())));
  });
}

}  // namespace kvr::net
