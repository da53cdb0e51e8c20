// KvCommand and KvReply to and from message bytes the way they really travel: the
// codec's builder into a Cap'n Proto message, and back through a message reader with the
// codec's reader options (a malformed frame is the RPC layer's error; here an exception,
// turned into false) and the codec's validating reader.
#pragma once

#include <cstring>
#include <string>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include "schemas/codec.h"

namespace kvr::test {

template <typename Root, typename Value>
std::string encodeRoot(const Value& value) {
  capnp::MallocMessageBuilder builder;
  codec::toCapnp(value, builder.initRoot<Root>());
  auto words = capnp::messageToFlatArray(builder);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

template <typename Root, typename Value>
bool decodeRoot(const std::string& bytes, Value* out, std::string* error) {
  if (bytes.empty() || bytes.size() % sizeof(capnp::word) != 0) {
    *error = "not a whole number of words";
    return false;
  }
  auto words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
  memcpy(words.begin(), bytes.data(), bytes.size());
  try {
    capnp::FlatArrayMessageReader reader(words, codec::readerOptions());
    return codec::fromCapnp(reader.getRoot<Root>(), out, error);
  } catch (const kj::Exception& e) {
    *error = e.getDescription().cStr();
    return false;
  }
}

inline std::string messageBytes(const KvCommand& c) { return encodeRoot<schema::Command>(c); }
inline std::string messageBytes(const KvReply& r) { return encodeRoot<schema::Reply>(r); }
inline bool fromMessageBytes(const std::string& bytes, KvCommand* out, std::string* error) {
  return decodeRoot<schema::Command>(bytes, out, error);
}
inline bool fromMessageBytes(const std::string& bytes, KvReply* out, std::string* error) {
  return decodeRoot<schema::Reply>(bytes, out, error);
}

}  // namespace kvr::test
