// The one codec between core types (core/types.h, core/command.h) and the Cap'n Proto
// schemas (schemas/raft.capnp, schemas/kv.capnp).
//
// Encoding trusts its input (it comes from our own core) but asserts the size limits
// (message type, entry count, snapshot chunk, total size), so an oversized message is
// caught at the sender. Decoding trusts nothing: every
// decode function here validates shape and limits (core/limits.h), catches every
// exception Cap'n Proto raises on malformed input, and reports failure as `false` plus a
// human readable reason. Only the functions documented as throwing ever throw.
//
// Wire form of the message "bytes": one unpacked Cap'n Proto message (segment table and
// segments, as capnp::messageToFlatArray writes it), with nothing after it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <capnp/message.h>
#include <kj/array.h>

#include "core/command.h"
#include "core/replica.h"
#include "core/types.h"
#include "schemas/kv.capnp.h"
#include "schemas/raft.capnp.h"

namespace kvr::codec {

// Reader options for every message decoded from untrusted bytes: a traversal limit equal
// to the largest message we accept, so one message can never make us read more.
capnp::ReaderOptions readerOptions();

// ---- builders: core type -> schema ----

// The message body; msg.from and msg.to travel in the envelope, not here.
void toCapnp(const Message& msg, schema::Message::Builder out);
void toCapnp(uint64_t clusterId, const Message& msg, schema::PeerEnvelope::Builder out);
void toCapnp(const KvCommand& cmd, schema::Command::Builder out);
// Leaves out.error empty; the caller sets it when it has an explanation.
void toCapnp(const KvReply& reply, schema::Reply::Builder out);
void toCapnp(const ReplicaStatus& status, schema::NodeStatus::Builder out);

// ---- validating readers: schema -> core type; never throw ----

// Fills everything but out->from and out->to, which it leaves untouched.
bool fromCapnp(schema::Message::Reader in, Message* out, std::string* error);
// Also checks the cluster id and that from/to are valid node ids.
bool fromCapnp(schema::PeerEnvelope::Reader in, uint64_t expectedClusterId, Message* out,
               std::string* error);
// Structural checks only (op in range): size limits on keys and values are the server's
// business (kvr::validate answers them with Status::TooLarge).
bool fromCapnp(schema::Command::Reader in, KvCommand* out, std::string* error);
// Drops in.error (KvReply has no such field); read it from the reader if needed.
bool fromCapnp(schema::Reply::Reader in, KvReply* out, std::string* error);

// ---- throwing reader: the same checks, failure is a kj exception (KJ_FAIL_REQUIRE) ----

// Only tests/cluster/kv_client_test.cc uses it; remove it with that use.
KvCommand fromCapnp(schema::Command::Reader in);

// ---- whole peer envelopes ----

// Throws (kj::Exception) if the message breaks a size limit: a sender bug.
kj::Array<capnp::word> encodeEnvelope(uint64_t clusterId, const Message& msg);
// Decodes any cluster's envelope; *clusterId receives the id found on the wire.
bool decodeEnvelope(kj::ArrayPtr<const capnp::word> words, uint64_t* clusterId, Message* out,
                    std::string* error);

// ---- bytes: what the simulator passes through its network ----

std::string encodeMessageBytes(uint64_t clusterId, const Message& msg);
// Rejects envelopes of any other cluster with an error naming both ids.
bool decodeMessageBytes(std::string_view bytes, uint64_t expectedClusterId, Message* out,
                        std::string* error);

}  // namespace kvr::codec
