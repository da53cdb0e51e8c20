// An AsyncIoStream that reads its inner stream in chunks and serves reads from what it
// holds. Cap'n Proto's message reader asks for a message's first word, then its segment
// table, then its segments, one read() each, and one more that finds the socket empty;
// through this, one read() of up to kChunkBytes serves them all, and the messages that
// arrived with them. Writes go straight through.
#pragma once

#include <algorithm>
#include <cstring>

#include <kj/array.h>
#include <kj/async-io.h>

namespace kvr::net {

class BufferedReadStream final : public kj::AsyncIoStream {
 public:
  static constexpr size_t kChunkBytes = 64 * 1024;

  explicit BufferedReadStream(kj::Own<kj::AsyncIoStream> inner)
      : inner_(kj::mv(inner)), buffer_(kj::heapArray<kj::byte>(kChunkBytes)) {}

  kj::Promise<size_t> tryRead(void* out, size_t minBytes, size_t maxBytes) override {
    auto* dst = static_cast<kj::byte*>(out);
    size_t n = take(dst, maxBytes);
    if (n >= minBytes || eof_) return n;
    // A read as big as the buffer bypasses it (no copy for a big segment).
    if (maxBytes - n >= kChunkBytes) {
      return inner_->tryRead(dst + n, minBytes - n, maxBytes - n).then([n](size_t got) {
        return n + got;
      });
    }
    return inner_->tryRead(buffer_.begin(), 1, kChunkBytes)
        .then([this, dst, n, minBytes, maxBytes](size_t got) -> kj::Promise<size_t> {
          begin_ = 0;
          end_ = got;
          if (got == 0) eof_ = true;
          return tryRead(dst + n, minBytes > n ? minBytes - n : 0, maxBytes - n)
              .then([n](size_t more) { return n + more; });
        });
  }

  kj::Promise<void> write(const void* buffer, size_t size) override {
    return inner_->write(buffer, size);
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    return inner_->write(pieces);
  }
  kj::Promise<void> whenWriteDisconnected() override { return inner_->whenWriteDisconnected(); }
  void shutdownWrite() override { inner_->shutdownWrite(); }
  void abortRead() override { inner_->abortRead(); }
  void getsockopt(int level, int option, void* value, uint* length) override {
    inner_->getsockopt(level, option, value, length);
  }
  void setsockopt(int level, int option, const void* value, uint length) override {
    inner_->setsockopt(level, option, value, length);
  }
  void getsockname(struct sockaddr* addr, uint* length) override {
    inner_->getsockname(addr, length);
  }
  void getpeername(struct sockaddr* addr, uint* length) override {
    inner_->getpeername(addr, length);
  }

 private:
  size_t take(kj::byte* dst, size_t maxBytes) {
    size_t n = std::min(maxBytes, end_ - begin_);
    if (n == 0) return 0;  // dst may be null (a read of nothing)
    memcpy(dst, buffer_.begin() + begin_, n);
    begin_ += n;
    return n;
  }

  kj::Own<kj::AsyncIoStream> inner_;
  kj::Array<kj::byte> buffer_;
  size_t begin_ = 0;
  size_t end_ = 0;
  bool eof_ = false;
};

}  // namespace kvr::net
