// Framing for the peer protocol (schemas/raft.capnp PeerFrame): Cap'n Proto messages in
// standard stream framing, written whole with one gathered write and read through a
// buffer, so that one read() hands over every frame that has arrived.
//
// A frame larger than the reader's bound, or one that is not a valid message, fails the
// read (the connection is then dropped): a peer cannot make a node buffer without limit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/array.h>
#include <kj/async-io.h>

namespace kvr::net {

// PeerFrame.magic: tells our frames from a Cap'n Proto RPC message ("kvrpeer1").
constexpr uint64_t kPeerFrameMagic = 0x6b76727065657231ull;

// Every frame on a peer connection is at most this big: a batch is bounded by
// PeerTransportOptions::maxBatchBytes (8 MiB) plus per-envelope framing.
constexpr size_t kMaxPeerFrameBytes = 16u << 20;

class PeerFrameReader {
 public:
  explicit PeerFrameReader(kj::AsyncInputStream& in, size_t maxFrameBytes = kMaxPeerFrameBytes);
  KJ_DISALLOW_COPY(PeerFrameReader);

  // Reads what has arrived (at least one byte). Resolves to false at a clean end of the
  // stream (between frames); rejects if it ends inside a frame or a frame is too big.
  // Every reader take() returned must be destroyed first: the buffer may move.
  kj::Promise<bool> fill();

  // The next whole frame in the buffer, if any. It points into the buffer.
  kj::Maybe<kj::Own<capnp::MessageReader>> take();

  size_t buffered() const { return end_ - begin_; }

 private:
  // Words the frame at begin_ needs in all (header included), once its header is in.
  kj::Maybe<size_t> frameWords() const;

  kj::AsyncInputStream& in_;
  size_t maxFrameWords_;
  kj::Array<capnp::word> buffer_;
  size_t begin_ = 0;          // in bytes: the first unread byte
  size_t end_ = 0;            // in bytes: one past the last byte read
  uint32_t outstanding_ = 0;  // readers from take() still alive
};

// The first segment of one connection's outgoing frames, reused from frame to frame. A
// fresh MallocMessageBuilder callocs its first segment (8 KiB by default, or the batch's
// size) for every frame, and on a leader those large, short-lived blocks were most of
// its malloc time. Cap'n Proto wants a first segment it is given to be zero; the
// builder's destructor zeroes again only the words it used.
class FrameScratch {
 public:
  // Bigger frames get a segment of their own: the scratch stays bounded per connection.
  static constexpr size_t kMaxWords = (256 * 1024) / sizeof(capnp::word);

  FrameScratch() = default;
  KJ_DISALLOW_COPY(FrameScratch);

  // A builder for a frame of about `words` words, over the scratch (grown to fit) when
  // that is at most kMaxWords and no builder from it is still alive; else one with a
  // first segment of its own. The scratch must outlive the builder.
  kj::Own<capnp::MessageBuilder> builder(size_t words);

 private:
  kj::Array<capnp::word> words_;  // all zero while no builder over it is alive
  bool inUse_ = false;
};

// Writes `message` as one frame (one gathered write). The builder must outlive the
// returned promise (attach it).
kj::Promise<void> writePeerFrame(kj::AsyncOutputStream& out, capnp::MessageBuilder& message);

// What a dialer makes of the first frame a listener sends when it is not a PeerFrame: the
// reason of a Cap'n Proto RPC Abort (a refused connection), or a description of garbage.
std::string describeForeignFrame(capnp::MessageReader& frame);

}  // namespace kvr::net
