#include "net/peer_stream.h"

#include <algorithm>
#include <cstring>

#include <capnp/rpc.capnp.h>
#include <capnp/serialize-async.h>
#include <kj/debug.h>

namespace kvr::net {
namespace {

constexpr size_t kWordBytes = sizeof(capnp::word);
// What one read asks for at least, and what an empty buffer shrinks back to.
constexpr size_t kReadChunkBytes = 64 * 1024;

// A frame in the reader's buffer; tells the reader when it is gone.
class BufferedFrame final : public capnp::FlatArrayMessageReader {
 public:
  BufferedFrame(kj::ArrayPtr<const capnp::word> words, capnp::ReaderOptions options,
                uint32_t& outstanding)
      : FlatArrayMessageReader(words, options), outstanding_(outstanding) {}
  ~BufferedFrame() noexcept(false) { --outstanding_; }

 private:
  uint32_t& outstanding_;
};

}  // namespace

PeerFrameReader::PeerFrameReader(kj::AsyncInputStream& in, size_t maxFrameBytes)
    : in_(in),
      maxFrameWords_(maxFrameBytes / kWordBytes),
      buffer_(kj::heapArray<capnp::word>(kReadChunkBytes / kWordBytes)) {
  KJ_REQUIRE(maxFrameBytes >= kReadChunkBytes, "a frame bound below one read", maxFrameBytes);
}

kj::Maybe<size_t> PeerFrameReader::frameWords() const {
  size_t have = (end_ - begin_) / kWordBytes;
  if (have == 0) return nullptr;
  KJ_ASSERT(begin_ % kWordBytes == 0, "frames are whole words", begin_);
  return capnp::expectedSizeInWordsFromPrefix(
      kj::arrayPtr(buffer_.begin() + begin_ / kWordBytes, have));
}

kj::Promise<bool> PeerFrameReader::fill() {
  KJ_REQUIRE(outstanding_ == 0, "a frame from take() is still alive; the buffer would move");
  size_t need = kReadChunkBytes;
  KJ_IF_MAYBE(words, frameWords()) {
    KJ_REQUIRE(*words <= maxFrameWords_, "peer frame too big", *words * kWordBytes,
               maxFrameWords_ * kWordBytes);
    need = std::max(need, *words * kWordBytes);
  }
  size_t have = end_ - begin_;
  size_t capacity = buffer_.size() * kWordBytes;
  if (have == 0 && capacity > 16 * kReadChunkBytes) {
    buffer_ = kj::heapArray<capnp::word>(kReadChunkBytes / kWordBytes);  // after a big frame
    capacity = buffer_.size() * kWordBytes;
  }
  auto* bytes = reinterpret_cast<kj::byte*>(buffer_.begin());
  if (capacity < need + kWordBytes) {
    auto bigger = kj::heapArray<capnp::word>((need + kReadChunkBytes) / kWordBytes);
    memcpy(bigger.begin(), bytes + begin_, have);
    buffer_ = kj::mv(bigger);
    bytes = reinterpret_cast<kj::byte*>(buffer_.begin());
    capacity = buffer_.size() * kWordBytes;
    begin_ = 0;
    end_ = have;
  } else if (begin_ > 0 && capacity - end_ < kReadChunkBytes / 2) {
    memmove(bytes, bytes + begin_, have);
    begin_ = 0;
    end_ = have;
  } else if (have == 0) {
    begin_ = end_ = 0;
  }
  KJ_ASSERT(end_ < capacity);
  return in_.tryRead(bytes + end_, 1, capacity - end_).then([this](size_t n) {
    if (n == 0) {
      KJ_REQUIRE(begin_ == end_, "peer connection ended inside a frame", end_ - begin_);
      return false;
    }
    end_ += n;
    KJ_IF_MAYBE(words, frameWords()) {
      KJ_REQUIRE(*words <= maxFrameWords_, "peer frame too big", *words * kWordBytes,
                 maxFrameWords_ * kWordBytes);
    }
    return true;
  });
}

kj::Maybe<kj::Own<capnp::MessageReader>> PeerFrameReader::take() {
  KJ_IF_MAYBE(words, frameWords()) {
    KJ_REQUIRE(*words <= maxFrameWords_, "peer frame too big", *words * kWordBytes,
               maxFrameWords_ * kWordBytes);
    if (*words * kWordBytes > end_ - begin_) return nullptr;
    auto frame = kj::arrayPtr(buffer_.begin() + begin_ / kWordBytes, *words);
    begin_ += *words * kWordBytes;
    capnp::ReaderOptions options;
    options.traversalLimitInWords = maxFrameWords_;
    // The constructor validates the segment table and may throw.
    ++outstanding_;
    kj::Own<capnp::MessageReader> reader;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                  reader = kj::heap<BufferedFrame>(frame, options, outstanding_);
                })) {
      --outstanding_;  // no reader was made
      kj::throwFatalException(kj::mv(*e));
    }
    return kj::mv(reader);
  }
  return nullptr;
}

namespace {

// A builder over a FrameScratch: marks the scratch busy for its lifetime. The base
// class's destructor, which runs after this one's, zeroes the words the frame used.
class ScratchBuilder final : public capnp::MallocMessageBuilder {
 public:
  ScratchBuilder(kj::ArrayPtr<capnp::word> firstSegment, bool& inUse)
      : MallocMessageBuilder(firstSegment), inUse_(inUse) {
    inUse_ = true;
  }
  ~ScratchBuilder() noexcept(false) { inUse_ = false; }

 private:
  bool& inUse_;
};

}  // namespace

kj::Own<capnp::MessageBuilder> FrameScratch::builder(size_t words) {
  // A frame under construction is the only one on its connection (one write at a time),
  // but the previous frame's builder may still be held by its write's promise chain.
  if (words > kMaxWords || inUse_) {
    return kj::heap<capnp::MallocMessageBuilder>(
        static_cast<uint>(std::min(words, kMaxPeerFrameBytes / kWordBytes)));
  }
  if (words > words_.size()) {
    // Grown in 16 KiB steps, so a load that grows slowly reallocates a few times only.
    constexpr size_t kStepWords = (16 * 1024) / kWordBytes;
    size_t grown = std::min(kMaxWords, (words + kStepWords - 1) / kStepWords * kStepWords);
    words_ = kj::heapArray<capnp::word>(grown);
    memset(words_.begin(), 0, words_.size() * kWordBytes);
  }
  return kj::heap<ScratchBuilder>(words_.asPtr(), inUse_);
}

kj::Promise<void> writePeerFrame(kj::AsyncOutputStream& out, capnp::MessageBuilder& message) {
  return capnp::writeMessage(out, message);
}

std::string describeForeignFrame(capnp::MessageReader& frame) {
  std::string what = "the peer answered with something that is not a peer frame";
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                auto rpc = frame.getRoot<capnp::rpc::Message>();
                if (rpc.isAbort()) {
                  what = rpc.getAbort().getReason();
                }
              })) {
    (void)e;
  }
  return what;
}

}  // namespace kvr::net
