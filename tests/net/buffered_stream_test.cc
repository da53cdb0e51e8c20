// BufferedReadStream over a real loopback socket: reads of every shape return the bytes
// in order, one socket read serves many small reads, a big read bypasses the buffer, and
// the end of the stream is reported after what was buffered.
#include <gtest/gtest.h>

#include <kj/async-io.h>

#include <vector>

#include "net/buffered_stream.h"
#include "net/uv_io.h"
#include "tests/net/uv_loop_fixture.h"

namespace kvr::net {
namespace {

using BufferedStreamTest = testing::UvLoopTest;

// Counts the reads that reach the inner stream.
class CountingStream final : public kj::AsyncIoStream {
 public:
  explicit CountingStream(kj::Own<kj::AsyncIoStream> inner) : inner_(kj::mv(inner)) {}
  kj::Promise<size_t> tryRead(void* b, size_t minBytes, size_t maxBytes) override {
    ++reads;
    return inner_->tryRead(b, minBytes, maxBytes);
  }
  kj::Promise<void> write(const void* b, size_t n) override { return inner_->write(b, n); }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> p) override {
    return inner_->write(p);
  }
  kj::Promise<void> whenWriteDisconnected() override { return inner_->whenWriteDisconnected(); }
  void shutdownWrite() override { inner_->shutdownWrite(); }
  size_t reads = 0;

 private:
  kj::Own<kj::AsyncIoStream> inner_;
};

TEST_F(BufferedStreamTest, ReadsOfEveryShapeSeeTheBytesInOrder) {
  UvAsyncIo io(loop());
  auto& ws = io.waitScope();
  auto listener = io.network().parseAddress("127.0.0.1", 0).wait(ws)->listen();
  auto accepted = listener->accept();
  auto client =
      io.network().parseAddress("127.0.0.1", listener->getPort()).wait(ws)->connect().wait(ws);
  auto counting = kj::heap<CountingStream>(accepted.wait(ws));
  CountingStream& inner = *counting;
  BufferedReadStream stream(kj::mv(counting));

  // 1,000 small pieces in one write, then one piece bigger than the buffer.
  std::vector<kj::byte> sent;
  for (size_t i = 0; i < 8000; ++i) sent.push_back(static_cast<kj::byte>(i * 7 + 3));
  client->write(sent.data(), sent.size()).wait(ws);
  std::vector<kj::byte> big(3 * BufferedReadStream::kChunkBytes);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<kj::byte>(i * 13 + 1);
  auto writingBig = client->write(big.data(), big.size()).eagerlyEvaluate(nullptr);

  EXPECT_EQ(stream.tryRead(nullptr, 0, 0).wait(ws), 0u);  // capnp reads nothing like this
  std::vector<kj::byte> got(sent.size());
  size_t at = 0;
  while (at < sent.size()) {  // exact 8-byte reads, as capnp reads a message's first word
    at += stream.tryRead(got.data() + at, 8, 8).wait(ws);
  }
  EXPECT_EQ(got, sent);
  EXPECT_LE(inner.reads, 3u) << "small reads went to the socket one by one";

  std::vector<kj::byte> gotBig(big.size());
  size_t readsBefore = inner.reads;
  stream.read(gotBig.data(), gotBig.size()).wait(ws);  // bigger than the buffer: direct
  writingBig.wait(ws);
  EXPECT_EQ(gotBig, big);
  EXPECT_GE(inner.reads, readsBefore + 1);

  // The end: what is buffered first, then 0.
  kj::byte tail[5] = {1, 2, 3, 4, 5};
  client->write(tail, sizeof tail).wait(ws);
  client->shutdownWrite();
  kj::byte out[16];
  EXPECT_EQ(stream.tryRead(out, 2, 2).wait(ws), 2u);
  EXPECT_EQ(stream.tryRead(out + 2, 8, 16).wait(ws), 3u);  // fewer than asked: the end
  EXPECT_EQ(std::vector<kj::byte>(out, out + 5), std::vector<kj::byte>(tail, tail + 5));
  EXPECT_EQ(stream.tryRead(out, 1, 16).wait(ws), 0u);
}

}  // namespace
}  // namespace kvr::net
