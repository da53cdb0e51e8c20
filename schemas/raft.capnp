# Peer protocol: Raft messages between nodes of one cluster.
#
# `Message` mirrors kvr::Message (core/types.h) except for the routing fields: `from` and
# `to` travel once, in the `PeerEnvelope`, so a receiver can route or reject a message
# (wrong cluster, wrong destination) without looking at its body. schemas/codec.h is the
# only code that converts between these structs and the core types, and it validates
# every field against core/limits.h on the way in.
@0xa399724213f99d95;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("kvr::schema");

# Same ordinals as kvr::MsgType.
enum MsgType {
  preVote @0;
  preVoteResp @1;
  vote @2;
  voteResp @3;
  append @4;
  appendResp @5;
  heartbeat @6;
  heartbeatResp @7;
  snapshot @8;
  snapshotResp @9;
  timeoutNow @10;
  readIndex @11;
  readIndexResp @12;
  termPoll @13;      # a recovering node asks a member for its term (context: nonce)
  termPollResp @14;  # context echoed; term: the responder's
}

# Same ordinals as kvr::EntryKind.
enum EntryKind {
  noop @0;
  command @1;
  config @2;  # a whole kvr::ConfState, core/membership.h encodeConf
}

struct Entry {
  term @0 :UInt64;
  index @1 :UInt64;
  kind @2 :EntryKind;
  data @3 :Data;     # an encoded kvr::KvCommand for `command`, empty for `noop`
}

struct SnapshotMeta {
  index @0 :UInt64;
  term @1 :UInt64;
  voters @2 :List(UInt32);  # kvr::ConfState::voters: sorted, unique
  conf @3 :Data;  # the whole ConfState (encodeConf) when it has learners or addresses
}

# kvr::Message without from/to (see PeerEnvelope). Field use by type is documented on
# kvr::Message; unused fields keep their defaults and cost nothing on the wire.
struct Message {
  type @0 :MsgType;
  term @1 :UInt64;
  logTerm @2 :UInt64;
  index @3 :UInt64;
  commit @4 :UInt64;
  reject @5 :Bool;
  rejectHint @6 :UInt64;
  context @7 :UInt64;
  entries @8 :List(Entry);   # append only; at most kMaxEntriesPerAppend

  # Snapshot transfer (type snapshot / snapshotResp).
  snap @9 :SnapshotMeta;
  snapOffset @10 :UInt64;
  snapSize @11 :UInt64;
  snapDone @12 :Bool;
  snapChunk @13 :Data;       # at most kMaxSnapshotChunkBytes

  heldByAll @14 :UInt64;     # append/heartbeat: every member holds the log to here (<= commit)
}

struct PeerEnvelope {
  clusterId @0 :UInt64;   # a node drops envelopes from another cluster
  from @1 :UInt32;
  to @2 :UInt32;
  message @3 :Message;
}

# The peer protocol: a stream of PeerFrames (standard Cap'n Proto stream framing, one
# message per frame) on a connection from the sending node to the receiving one, not RPC.
# Raft messages are one-way, so a frame needs no answer: one Append costs one frame
# instead of a call, its return and its finish (net/peer_stream.h).
#
#   dialer -> listener: hello, then batches and pings
#   listener -> dialer: helloAnswer, then only pongs
#
# A listener that refuses the connection before reading the hello (too many strangers, a
# plaintext dialer on a TLS port) sends a Cap'n Proto RPC Abort instead (rpc_listener.h);
# the dialer tells the two apart by `magic`.
struct PeerFrame {
  magic @0 :UInt64;   # kPeerFrameMagic (net/peer_stream.h)
  union {
    # The first frame on a new connection: the receiver checks the cluster id and that
    # the sender is a member it expects. Each side also tells the other where it serves
    # clients (`clientAddr`, HOST:PORT of its KvService; empty if unknown), so that a
    # follower can send a client to its leader (kv.capnp Reply.leaderAddr).
    hello @1 :PeerHello;
    helloAnswer @2 :PeerHelloAnswer;   # `reason` explains a refusal; then the stream ends
    batch @3 :List(PeerEnvelope);      # at most PeerTransportOptions::maxBatchMessages
    ping @4 :UInt64;                   # the sender's nonce, echoed in a pong
    pong @5 :UInt64;
  }
}

struct PeerHello {
  clusterId @0 :UInt64;
  from @1 :UInt32;
  clientAddr @2 :Text;
  incarnation @3 :UInt64;  # the sender's data dir (disk/identity.h); 0: unknown
}

struct PeerHelloAnswer {
  ok @0 :Bool;
  reason @1 :Text;
  clientAddr @2 :Text;
  incarnation @3 :UInt64;  # the answerer's data dir
  # Refused because the answerer knew the dialer's node id with another incarnation: the
  # dialer's data dir was wiped or replaced, and it must stop (disk/peer_incarnations.h).
  staleIncarnation @4 :Bool;
}
