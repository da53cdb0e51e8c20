#include "sim/history.h"

#include <kj/debug.h>

#include <utility>

#include "core/text.h"
#include "sim/json.h"

namespace kvr::sim {

const char* opKindName(OpKind k) {
  switch (k) {
    case OpKind::Put: return "put";
    case OpKind::Get: return "get";
    case OpKind::Delete: return "delete";
    case OpKind::Cas: return "cas";
  }
  return "?";
}

const char* outcomeName(Outcome o) {
  switch (o) {
    case Outcome::Ok: return "ok";
    case Outcome::Fail: return "fail";
    case Outcome::Unknown: return "unknown";
  }
  return "?";
}

bool validateOperation(const Operation& op, std::string* why) {
  auto bad = [&](std::string text) {
    if (why != nullptr) *why = std::move(text);
    return false;
  };
  if (op.op != OpKind::Put && op.op != OpKind::Get && op.op != OpKind::Delete &&
      op.op != OpKind::Cas) {
    return bad("unknown op kind");
  }
  bool writesValue = op.op == OpKind::Put || op.op == OpKind::Cas;
  if (!writesValue && !op.value.empty()) return bad("only put and cas carry a value");
  if (op.op != OpKind::Cas && (!op.expected.empty() || op.expectAbsent)) {
    return bad("only cas carries an expectation");
  }
  if (op.expectAbsent && !op.expected.empty()) {
    return bad("cas expecting absence must have an empty expected value");
  }
  switch (op.outcome) {
    case Outcome::Ok:
    case Outcome::Fail:
      if (!op.completeNs) return bad("ok and fail outcomes need a completion time");
      if (*op.completeNs < op.invokeNs) return bad("completed before it was invoked");
      break;
    case Outcome::Unknown:
      if (op.completeNs) return bad("an unknown outcome has no completion time");
      break;
    default: return bad("unknown outcome");
  }
  if (op.outcome != Outcome::Ok) {
    if (op.found) return bad("found is only set on ok outcomes");
    return true;
  }
  switch (op.op) {
    case OpKind::Put:
      if (op.output != kOutputOk || op.found) return bad("put ok must output \"ok\"");
      break;
    case OpKind::Get:
      if (!op.found && op.output != kOutputNotFound) {
        return bad("get without a value must output \"not_found\"");
      }
      break;
    case OpKind::Delete:
      if (op.found ? op.output != kOutputOk : op.output != kOutputNotFound) {
        return bad("delete must output \"ok\" with found, \"not_found\" without");
      }
      break;
    case OpKind::Cas:
      if (op.found) return bad("cas never sets found");
      if (op.output != kOutputOk && op.output != kOutputMismatch) {
        return bad("cas must output \"ok\" or \"mismatch\"");
      }
      break;
  }
  return true;
}

namespace {

std::string quoteForHumans(std::string_view s) { return text::quoted(s, text::Quote::Human); }

}  // namespace

std::string describeOperation(const Operation& op) {
  // Built by appending (operator+ chains trip a false -Wrestrict in g++ 12 at -O3).
  std::string s;
  s += 'c';
  s += std::to_string(op.client);
  s += ' ';
  s += opKindName(op.op);
  s += '(';
  s += quoteForHumans(op.key);
  switch (op.op) {
    case OpKind::Put:
      s += ", ";
      s += quoteForHumans(op.value);
      break;
    case OpKind::Get:
    case OpKind::Delete: break;
    case OpKind::Cas:
      s += ", ";
      s += op.expectAbsent ? std::string("<absent>") : quoteForHumans(op.expected);
      s += "->";
      s += quoteForHumans(op.value);
      break;
  }
  s += ") [";
  s += std::to_string(op.invokeNs);
  s += ", ";
  s += op.completeNs ? std::to_string(*op.completeNs) : std::string("-");
  s += "] ";
  s += outcomeName(op.outcome);
  if (op.outcome == Outcome::Ok && op.op == OpKind::Get && op.found) {
    s += ": ";
    s += quoteForHumans(op.output);
  } else if (!op.output.empty()) {
    s += ": ";
    s += op.output;
  }
  return s;
}

// ---- History ----

History::OpId History::invoke(uint32_t client, OpKind op, std::string key, std::string value,
                              std::string expected, bool expectAbsent, uint64_t nowNs) {
  KJ_REQUIRE(ops_.size() < kMaxHistoryOps, "history is full", kMaxHistoryOps);
  Operation o;
  o.client = client;
  o.op = op;
  o.key = std::move(key);
  o.value = std::move(value);
  o.expected = std::move(expected);
  o.expectAbsent = expectAbsent;
  o.invokeNs = nowNs;
  std::string why;
  KJ_REQUIRE(validateOperation(o, &why), "malformed invocation", why);
  ops_.push_back(std::move(o));
  settled_.push_back(false);
  return ops_.size() - 1;
}

History::OpId History::invokePut(uint32_t client, std::string key, std::string value,
                                 uint64_t nowNs) {
  return invoke(client, OpKind::Put, std::move(key), std::move(value), {}, false, nowNs);
}

History::OpId History::invokeGet(uint32_t client, std::string key, uint64_t nowNs) {
  return invoke(client, OpKind::Get, std::move(key), {}, {}, false, nowNs);
}

History::OpId History::invokeDelete(uint32_t client, std::string key, uint64_t nowNs) {
  return invoke(client, OpKind::Delete, std::move(key), {}, {}, false, nowNs);
}

History::OpId History::invokeCas(uint32_t client, std::string key,
                                 std::optional<std::string> expected, std::string newValue,
                                 uint64_t nowNs) {
  bool absent = !expected.has_value();
  return invoke(client, OpKind::Cas, std::move(key), std::move(newValue),
                absent ? std::string() : std::move(*expected), absent, nowNs);
}

Operation& History::settle(OpId id, uint64_t nowNs, Outcome outcome, std::string output,
                           bool found) {
  KJ_REQUIRE(id < ops_.size(), "no such operation", id);
  KJ_REQUIRE(!settled_[id], "operation already settled", id);
  Operation& o = ops_[id];
  KJ_REQUIRE(nowNs >= o.invokeNs, "settled before invoked", id, nowNs, o.invokeNs);
  o.completeNs = nowNs;
  o.outcome = outcome;
  o.output = std::move(output);
  o.found = found;
  settled_[id] = true;
  return o;
}

void History::completePut(OpId id, uint64_t nowNs) {
  KJ_REQUIRE(id < ops_.size() && ops_[id].op == OpKind::Put, "not a put", id);
  settle(id, nowNs, Outcome::Ok, std::string(kOutputOk), false);
}

void History::completeGet(OpId id, uint64_t nowNs, std::optional<std::string> value) {
  KJ_REQUIRE(id < ops_.size() && ops_[id].op == OpKind::Get, "not a get", id);
  bool found = value.has_value();
  settle(id, nowNs, Outcome::Ok, found ? std::move(*value) : std::string(kOutputNotFound),
         found);
}

void History::completeDelete(OpId id, uint64_t nowNs, bool existed) {
  KJ_REQUIRE(id < ops_.size() && ops_[id].op == OpKind::Delete, "not a delete", id);
  settle(id, nowNs, Outcome::Ok, std::string(existed ? kOutputOk : kOutputNotFound), existed);
}

void History::completeCas(OpId id, uint64_t nowNs, bool swapped) {
  KJ_REQUIRE(id < ops_.size() && ops_[id].op == OpKind::Cas, "not a cas", id);
  settle(id, nowNs, Outcome::Ok, std::string(swapped ? kOutputOk : kOutputMismatch), false);
}

void History::fail(OpId id, uint64_t nowNs, std::string reason) {
  settle(id, nowNs, Outcome::Fail, std::move(reason), false);
}

void History::giveUp(OpId id, std::string reason) {
  KJ_REQUIRE(id < ops_.size(), "no such operation", id);
  KJ_REQUIRE(!settled_[id], "operation already settled", id);
  ops_[id].output = std::move(reason);
  settled_[id] = true;
}

History::OpId History::append(Operation op) {
  KJ_REQUIRE(ops_.size() < kMaxHistoryOps, "history is full", kMaxHistoryOps);
  std::string why;
  KJ_REQUIRE(validateOperation(op, &why), "malformed operation", why);
  ops_.push_back(std::move(op));
  settled_.push_back(true);
  return ops_.size() - 1;
}

const Operation& History::op(OpId id) const {
  KJ_REQUIRE(id < ops_.size(), "no such operation", id);
  return ops_[id];
}

bool History::isSettled(OpId id) const {
  KJ_REQUIRE(id < ops_.size(), "no such operation", id);
  return settled_[id];
}

// ---- JSON writer ----

namespace {

void appendJsonString(std::string& out, std::string_view s) {
  text::appendQuoted(out, s, text::Quote::Json);
}

}  // namespace

std::string toJsonLine(const Operation& op) {
  std::string out;
  out.reserve(128 + op.key.size() + op.value.size() + op.expected.size() + op.output.size());
  out += "{\"client\":";
  out += std::to_string(op.client);
  out += ",\"op\":";
  appendJsonString(out, opKindName(op.op));
  out += ",\"key\":";
  appendJsonString(out, op.key);
  out += ",\"value\":";
  appendJsonString(out, op.value);
  out += ",\"expected\":";
  if (op.expectAbsent) {
    out += "null";
  } else {
    appendJsonString(out, op.expected);
  }
  out += ",\"invoke_ns\":";
  out += std::to_string(op.invokeNs);
  out += ",\"complete_ns\":";
  out += op.completeNs ? std::to_string(*op.completeNs) : std::string("null");
  out += ",\"outcome\":";
  appendJsonString(out, outcomeName(op.outcome));
  out += ",\"output\":";
  appendJsonString(out, op.output);
  out += ",\"found\":";
  out += op.found ? "true" : "false";
  out += "}\n";
  return out;
}

std::string toJsonLines(const History& history) {
  std::string out;
  for (const Operation& op : history.ops()) out += toJsonLine(op);
  return out;
}

// ---- JSON-lines parser (exactly the format above, nothing more) ----

namespace {

// Fills *op from one parsed line. False, with the reason in *error, on an unknown or
// mistyped field or a missing required one.
bool operationFromJson(const json::Value& obj, Operation* op, std::string* error) {
  auto bad = [&](std::string what) {
    *error = std::move(what);
    return false;
  };
  if (obj.kind != json::Value::Object) return bad("not an object");
  if (obj.members.empty()) return bad("empty object");
  bool haveFound = false;
  for (const auto& [name, v] : obj.members) {
    auto isNull = v.kind == json::Value::Null;
    auto needString = [&](std::string* out) {
      if (v.kind != json::Value::String) return bad("\"" + name + "\" is not a string");
      *out = v.text;
      return true;
    };
    auto needU64 = [&](uint64_t* out) {
      if (!json::toU64(v, out)) return bad("\"" + name + "\" is not a non-negative integer");
      return true;
    };
    if (name == "client") {
      uint64_t n;
      if (!needU64(&n)) return false;
      if (n > UINT32_MAX) return bad("client out of range");
      op->client = static_cast<uint32_t>(n);
    } else if (name == "op") {
      std::string s;
      if (!needString(&s)) return false;
      if (s == "put") op->op = OpKind::Put;
      else if (s == "get") op->op = OpKind::Get;
      else if (s == "delete") op->op = OpKind::Delete;
      else if (s == "cas") op->op = OpKind::Cas;
      else return bad("unknown op \"" + s + "\"");
    } else if (name == "key") {
      if (!needString(&op->key)) return false;
    } else if (name == "value") {
      if (!needString(&op->value)) return false;
    } else if (name == "expected") {
      op->expectAbsent = isNull;
      op->expected.clear();
      if (!isNull && !needString(&op->expected)) return false;
    } else if (name == "invoke_ns") {
      if (!needU64(&op->invokeNs)) return false;
    } else if (name == "complete_ns") {
      op->completeNs.reset();
      uint64_t n;
      if (!isNull) {
        if (!needU64(&n)) return false;
        op->completeNs = n;
      }
    } else if (name == "outcome") {
      std::string s;
      if (!needString(&s)) return false;
      if (s == "ok") op->outcome = Outcome::Ok;
      else if (s == "fail") op->outcome = Outcome::Fail;
      else if (s == "unknown") op->outcome = Outcome::Unknown;
      else return bad("unknown outcome \"" + s + "\"");
    } else if (name == "output") {
      if (!needString(&op->output)) return false;
    } else if (name == "found") {
      if (v.kind != json::Value::Bool) return bad("found must be true or false");
      op->found = v.boolean;
      haveFound = true;
    } else {
      return bad("unknown field \"" + name + "\"");
    }
  }
  for (const char* required : {"client", "op", "key", "invoke_ns", "outcome"}) {
    if (obj.get(required) == nullptr) return bad(std::string("missing \"") + required + "\"");
  }
  if (!haveFound && op->outcome == Outcome::Ok) {
    // Older or hand-written files: infer from the output text.
    if (op->op == OpKind::Get) op->found = op->output != kOutputNotFound;
    if (op->op == OpKind::Delete) op->found = op->output == kOutputOk;
  }
  return true;
}

}  // namespace

bool parseJsonLines(std::string_view text, History* out, std::string* error) {
  KJ_REQUIRE(out != nullptr);
  *out = History();
  size_t lineNo = 0;
  size_t start = 0;
  auto bad = [&](const std::string& what) {
    if (error != nullptr) *error = "line " + std::to_string(lineNo) + ": " + what;
    return false;
  };
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    ++lineNo;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    if (out->size() >= kMaxHistoryOps) return bad("too many operations");
    Operation op;
    json::Value doc;
    std::string why;
    if (!json::parse(line, &doc, &why) || !operationFromJson(doc, &op, &why)) return bad(why);
    if (!validateOperation(op, &why)) return bad(why);
    out->append(std::move(op));
  }
  return true;
}

}  // namespace kvr::sim
