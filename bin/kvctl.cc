// kvctl: command-line client of the KV store (see usage()).
//
// Exit codes: 0 ok, 1 not found or cas mismatch, 2 error (message on stderr).
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <kj/debug.h>
#include <kj/exception.h>

#include "bin/kvctl_snapshot.h"
#include "core/limits.h"
#include "core/text.h"
#include "net/kv_client.h"

namespace {

using kvr::client::EndpointStatus;
using kvr::client::Health;
using kvr::client::KvClient;
using kvr::client::Options;
using kvr::client::Outcome;
using kvr::client::Result;

constexpr int kExitOk = 0;
constexpr int kExitNo = 1;  // not found, cas mismatch
constexpr int kExitError = 2;

void usage(FILE* out) {
  std::fputs(
      "usage: kvctl [FLAGS] COMMAND [ARGS] [FLAGS]\n"
      "\n"
      "flags (anywhere on the line; --flag=VALUE works too; after -- every word is an\n"
      "argument, e.g. kvctl put -- --key value):\n"
      "  --endpoints HOST:PORT,...  client addresses of nodes to start from (default\n"
      "                             127.0.0.1:7001); any one node is enough: a follower\n"
      "                             names the leader's address and kvctl goes there\n"
      "  --client-id ID             use this existing session (needs --request-id)\n"
      "  --request-id N             request id of the write (with --client-id)\n"
      "  --stale                    reads may be served from any node's local state\n"
      "  --timeout MS               overall deadline, retries included (default 5000)\n"
      "  --attempt-timeout MS       deadline of one RPC attempt (default 1000)\n"
      "  --json                     machine-readable output\n"
      "  --no-local-check           send requests the client would reject (for tests)\n"
      "  --cacert FILE              connect with TLS, trusting the nodes' certificates\n"
      "                             only if this CA (PEM) signed them\n"
      "  --cert FILE, --key FILE    client certificate and key (PEM), for nodes started\n"
      "                             with --client-cert-auth\n"
      "  --tls-server-name NAME     the name the nodes' certificates must carry (default:\n"
      "                             the host of each endpoint)\n"
      "\n"
      "commands:\n"
      "  put K V                    V of '-' reads the value from stdin\n"
      "  get K\n"
      "  del K\n"
      "  cas K EXPECTED NEW         write NEW if K holds EXPECTED\n"
      "  cas K --absent NEW         write NEW if K is absent\n"
      "  range FROM TO [--limit N]  keys in [FROM, TO); TO '' = to the end\n"
      "  status                     every endpoint: id, role, term, leader, commit, applied\n"
      "  health                     exit 0 if a leader exists and every endpoint answers\n"
      "  session                    open a session and print its client id\n"
      "  snapshot save FILE         write a consistent copy of the cluster's data to FILE\n"
      "  snapshot status FILE       print a backup file's index, term, size, keys, checksum\n"
      "  member list                the configuration at the leader: id, voter or learner,\n"
      "                             raft and client address, match index (its log as the\n"
      "                             leader knows it)\n"
      "  member add ID RAFT_ADDR CLIENT_ADDR [--learner]\n"
      "                             add node ID as a learner; without --learner, then wait\n"
      "                             (up to --timeout, default 60000 here) for it to catch up\n"
      "                             and promote it to voter. Start the new node with\n"
      "                             kvnode --join meanwhile (README: Changing the cluster)\n"
      "  member promote ID          make a caught-up learner a voter (retries while it\n"
      "                             lags, up to --timeout)\n"
      "  member remove ID           remove a voter or learner (the leader too: it hands over)\n"
      "  leader transfer ID         make voter ID the leader; answers once it leads\n"
      "\n"
      "exit codes: 0 ok, 1 not found or cas mismatch, 2 error (message on stderr)\n",
      out);
}

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "kvctl: %s\n", message.c_str());
  std::exit(kExitError);
}

uint64_t parseNumber(const std::string& flag, const std::string& text, uint64_t max) {
  uint64_t v = 0;
  const kvr::text::NumberError error = kvr::text::parseUnsigned(text, &v, max);
  if (error == kvr::text::NumberError::TooLarge) die(flag + " is too large: " + text);
  if (error != kvr::text::NumberError::None) die(flag + " needs a number, got '" + text + "'");
  return v;
}

std::string jsonString(const std::string& s) {
  return kvr::text::quoted(s, kvr::text::Quote::Json);
}

struct Args {
  std::vector<std::string> endpoints{"127.0.0.1:7001"};
  Options options;
  bool haveClientId = false;
  bool haveRequestId = false;
  bool json = false;
  bool absent = false;               // cas --absent
  std::optional<uint32_t> limit;     // range --limit N
  bool learner = false;              // member add --learner
  bool timeoutGiven = false;         // --timeout on the line
  std::vector<std::string> command;  // the command and its arguments, flags taken out
};

// One flag (name without its value); `value` fetches its value (from "--flag=V" or the
// next word). False if the flag is unknown.
bool parseFlag(Args& a, const std::string& f, const std::function<std::string()>& value) {
  if (f == "--help" || f == "-h") {
    usage(stdout);
    std::exit(kExitOk);
  } else if (f == "--endpoints") {
    std::string list = value();
    KJ_IF_MAYBE(e, kj::runCatchingExceptions(
                       [&]() { a.endpoints = kvr::client::parseEndpointList(list); })) {
      die("bad --endpoints '" + list + "': " + std::string(e->getDescription().cStr()));
    }
  } else if (f == "--client-id") {
    a.options.clientId = parseNumber(f, value(), UINT64_MAX);
    if (a.options.clientId == 0) die("--client-id must be > 0");
    a.haveClientId = true;
  } else if (f == "--request-id") {
    a.options.firstRequestId = parseNumber(f, value(), UINT64_MAX);
    if (a.options.firstRequestId == 0) die("--request-id must be > 0");
    a.haveRequestId = true;
  } else if (f == "--timeout" || f == "--attempt-timeout") {
    uint32_t ms = uint32_t(parseNumber(f, value(), 24u * 3600 * 1000));
    if (ms == 0) die(f + " must be > 0");
    (f == "--timeout" ? a.options.timeoutMs : a.options.attemptTimeoutMs) = ms;
    if (f == "--timeout") a.timeoutGiven = true;
  } else if (f == "--learner") {
    a.learner = true;
  } else if (f == "--stale" || f == "--json" || f == "--no-local-check" || f == "--absent") {
    if (f == "--stale") a.options.stale = true;
    if (f == "--json") a.json = true;
    if (f == "--no-local-check") a.options.checkLocally = false;
    if (f == "--absent") a.absent = true;
  } else if (f == "--cacert") {
    a.options.tls.caFile = value();
  } else if (f == "--cert") {
    a.options.tls.certFile = value();
  } else if (f == "--key") {
    a.options.tls.keyFile = value();
  } else if (f == "--tls-server-name") {
    a.options.tls.serverName = value();
  } else if (f == "--limit") {
    a.limit = uint32_t(parseNumber(f, value(), UINT32_MAX));
  } else {
    return false;
  }
  return true;
}

// Flags may stand anywhere on the line, before or after the command and its arguments
// (like etcdctl); "--flag=VALUE" works too. After "--" every word is an argument, so a
// key or value that starts with "--" can be given: kvctl put -- --key --value.
Args parseArgs(int argc, char** argv) {
  Args a;
  bool onlyArguments = false;
  for (int i = 1; i < argc; ++i) {
    std::string word = argv[i];
    bool isFlag = !onlyArguments &&
                  (word == "-h" || (word.size() > 2 && word.rfind("--", 0) == 0));
    if (!onlyArguments && word == "--") {
      onlyArguments = true;
      continue;
    }
    if (!isFlag) {
      a.command.push_back(word);
      continue;
    }
    std::string flag = word;
    std::optional<std::string> inlineValue;
    if (size_t eq = word.find('='); eq != std::string::npos) {
      flag = word.substr(0, eq);
      inlineValue = word.substr(eq + 1);
    }
    bool usedValue = false;
    auto value = [&]() -> std::string {
      usedValue = true;
      if (inlineValue) return *inlineValue;
      if (i + 1 >= argc) die(flag + " needs a value");
      return argv[++i];
    };
    if (!parseFlag(a, flag, value)) die("unknown flag " + flag + " (see kvctl --help)");
    if (inlineValue && !usedValue) die(flag + " takes no value");
  }
  if (a.haveClientId != a.haveRequestId) {
    die("--client-id and --request-id go together (a session's request ids must increase)");
  }
  if (a.command.empty()) {
    usage(stderr);
    std::exit(kExitError);
  }
  if (a.absent && a.command[0] != "cas") die("--absent goes with cas only");
  if (a.limit && a.command[0] != "range") die("--limit goes with range only");
  if (a.learner &&
      (a.command.size() < 2 || a.command[0] != "member" || a.command[1] != "add")) {
    die("--learner goes with member add only");
  }
  return a;
}

void needArgs(const std::vector<std::string>& cmd, size_t n, const char* shape) {
  if (cmd.size() != n) die(std::string("usage: kvctl ") + shape);
}

// A value on stdin is kept up to this many bytes: enough for the server to refuse an
// oversized one itself (--no-local-check), never the whole of a huge input.
constexpr size_t kMaxStdinKeptBytes = 2 * kvr::limits::kMaxValueBytes;
// Past the kept bytes stdin is only counted (for an exact size in the error), up to here.
constexpr uint64_t kMaxStdinCountedBytes = uint64_t(1) << 30;

std::string readValue(const std::string& v) {
  if (v != "-") return v;
  std::string data;
  uint64_t total = 0;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, stdin)) > 0) {
    if (data.size() < kMaxStdinKeptBytes) {
      data.append(buf, std::min(n, kMaxStdinKeptBytes - data.size()));
    }
    total += n;
    if (total > kMaxStdinCountedBytes) break;
  }
  if (std::ferror(stdin))
    die(std::string("reading the value from stdin: ") + std::strerror(errno));
  KJ_ASSERT(data.size() == std::min<uint64_t>(total, kMaxStdinKeptBytes));
  if (total > data.size()) {
    // What we kept is not the value: never send it, never report its size as the value's.
    std::string size = total > kMaxStdinCountedBytes
                           ? "more than " + std::to_string(kMaxStdinCountedBytes) + " bytes"
                           : std::to_string(total) + " bytes";
    die("value on stdin is " + size + "; the limit is " +
        std::to_string(kvr::limits::kMaxValueBytes) + " bytes");
  }
  return data;
}

// Prints one operation's result and returns the exit code.
int report(const Args& a, const std::string& op, const Result& r) {
  if (a.json) {
    std::string out = "{\"outcome\":" + jsonString(kvr::client::outcomeName(r.outcome));
    if (r.outcome == Outcome::Error) {
      out += ",\"status\":" + jsonString(kvr::statusName(r.status));
      out += ",\"error\":" + jsonString(r.error);
      out += std::string(",\"maybeApplied\":") + (r.maybeApplied ? "true" : "false");
    }
    if (op == "get" && r.ok()) out += ",\"value\":" + jsonString(r.value);
    if (r.outcome == Outcome::CasMismatch) out += ",\"current\":" + jsonString(r.value);
    if (op == "range" && r.ok()) {
      out += ",\"kvs\":[";
      for (size_t k = 0; k < r.kvs.size(); ++k) {
        if (k > 0) out += ",";
        out += "{\"key\":" + jsonString(r.kvs[k].first) +
               ",\"value\":" + jsonString(r.kvs[k].second) + "}";
      }
      out += "],\"more\":";
      out += r.more ? "true" : "false";
    }
    if (r.outcome != Outcome::Error) out += ",\"index\":" + std::to_string(r.index);
    if (r.requestId != 0 || op == "session") {
      out += ",\"clientId\":" + std::to_string(r.clientId);
      if (op != "session") out += ",\"requestId\":" + std::to_string(r.requestId);
    }
    std::printf("%s}\n", out.c_str());
  } else {
    switch (r.outcome) {
      case Outcome::Ok:
        if (op == "get") {
          std::fwrite(r.value.data(), 1, r.value.size(), stdout);
          std::fputc('\n', stdout);
        } else if (op == "range") {
          for (auto& [k, v] : r.kvs) std::printf("%s\t%s\n", k.c_str(), v.c_str());
          if (r.more) std::fprintf(stderr, "kvctl: more keys follow (raise --limit)\n");
        } else if (op == "session") {
          std::printf("%llu\n", static_cast<unsigned long long>(r.clientId));
        } else {
          std::printf("ok\n");
        }
        break;
      case Outcome::NotFound: std::fprintf(stderr, "not found\n"); break;
      case Outcome::CasMismatch:
        std::fprintf(stderr, "cas mismatch: current value %s\n",
                     r.value.empty() ? "is empty or absent" : ("'" + r.value + "'").c_str());
        break;
      case Outcome::Error: break;
    }
  }
  if (r.outcome == Outcome::Error) {
    std::fprintf(stderr, "kvctl: %s failed: %s\n", op.c_str(), r.error.c_str());
  }
  switch (r.outcome) {
    case Outcome::Ok: return kExitOk;
    case Outcome::NotFound:
    case Outcome::CasMismatch: return kExitNo;
    case Outcome::Error: return kExitError;
  }
  return kExitError;
}

int printStatus(const Args& a, const std::vector<EndpointStatus>& all) {
  bool anyAnswered = false;
  if (a.json) {
    std::string out = "[";
    for (size_t k = 0; k < all.size(); ++k) {
      const auto& s = all[k];
      if (k > 0) out += ",";
      out += "{\"endpoint\":" + jsonString(s.endpoint) +
             ",\"reachable\":" + (s.reachable ? "true" : "false");
      if (s.reachable) {
        out += ",\"id\":" + std::to_string(s.id) + ",\"role\":" + jsonString(s.role) +
               ",\"term\":" + std::to_string(s.term) +
               ",\"leader\":" + std::to_string(s.leader) +
               ",\"commit\":" + std::to_string(s.commit) +
               ",\"applied\":" + std::to_string(s.applied) +
               ",\"lastIndex\":" + std::to_string(s.lastIndex) +
               ",\"snapshotIndex\":" + std::to_string(s.snapshotIndex) +
               ",\"recovering\":" + (s.recovering ? "true" : "false") +
               ",\"recoverUntil\":" + std::to_string(s.recoverUntil) +
               ",\"clientAddr\":" + jsonString(s.clientAddr) +
               ",\"leaderAddr\":" + jsonString(s.leaderAddr);
      } else {
        out += ",\"role\":\"unreachable\",\"error\":" + jsonString(s.error);
      }
      out += "}";
    }
    std::printf("%s]\n", out.c_str());
  } else {
    std::printf("%-22s %4s %-12s %8s %6s %10s %10s\n", "ENDPOINT", "ID", "ROLE", "TERM",
                "LEADER", "COMMIT", "APPLIED");
    for (const auto& s : all) {
      if (s.reachable) {
        std::printf("%-22s %4u %-12s %8llu %6u %10llu %10llu\n", s.endpoint.c_str(), s.id,
                    s.role.c_str(), static_cast<unsigned long long>(s.term), s.leader,
                    static_cast<unsigned long long>(s.commit),
                    static_cast<unsigned long long>(s.applied));
        if (s.recovering) {
          std::printf("%-22s      recovering: repairing storage damage from the leader, no "
                      "vote until its log matches up to index %llu\n",
                      "", static_cast<unsigned long long>(s.recoverUntil));
        }
      } else {
        std::printf("%-22s unreachable: %s\n", s.endpoint.c_str(), s.error.c_str());
      }
    }
  }
  for (const auto& s : all) anyAnswered = anyAnswered || s.reachable;
  if (!anyAnswered) {
    std::fprintf(stderr, "kvctl: status failed: no endpoint answered\n");
    return kExitError;
  }
  return kExitOk;
}

// ---- member and leader commands ----

using kvr::client::AdminOp;
using kvr::client::AdminRequest;
using kvr::client::MemberInfo;

kvr::NodeId parseNodeId(const std::string& text) {
  // The range (1..7) is the leader's to check, with its own words.
  return kvr::NodeId(parseNumber("node id", text, UINT32_MAX));
}

std::string membersJson(const Result& r) {
  std::string out = "{\"clusterId\":" + std::to_string(r.clusterId) +
                    ",\"confIndex\":" + std::to_string(r.confIndex) +
                    ",\"confCommitted\":" + (r.confCommitted ? "true" : "false") +
                    ",\"members\":[";
  for (size_t k = 0; k < r.members.size(); ++k) {
    const MemberInfo& m = r.members[k];
    if (k > 0) out += ",";
    out += "{\"id\":" + std::to_string(m.id) +
           ",\"role\":" + jsonString(m.voter ? "voter" : "learner") +
           ",\"leader\":" + (m.leader ? "true" : "false") +
           ",\"raftAddr\":" + jsonString(m.raftAddr) +
           ",\"clientAddr\":" + jsonString(m.clientAddr) +
           ",\"match\":" + std::to_string(m.match) + "}";
  }
  return out + "]}";
}

void printMembers(const Result& r) {
  std::printf("%4s %-8s %-22s %-22s %10s\n", "ID", "ROLE", "RAFT ADDRESS", "CLIENT ADDRESS",
              "MATCH");
  for (const MemberInfo& m : r.members) {
    std::string role = std::string(m.voter ? "voter" : "learner") + (m.leader ? "*" : "");
    std::printf("%4u %-8s %-22s %-22s %10llu\n", m.id, role.c_str(), m.raftAddr.c_str(),
                m.clientAddr.empty() ? "-" : m.clientAddr.c_str(),
                static_cast<unsigned long long>(m.match));
  }
  std::printf("(* leader; configuration of log index %llu, %s)\n",
              static_cast<unsigned long long>(r.confIndex),
              r.confCommitted ? "committed" : "not committed yet");
}

// One admin result: `done` (a sentence) or the error; returns the exit code.
int reportAdmin(const Args& a, const std::string& what, const Result& r,
                const std::string& done) {
  if (!r.ok()) {
    if (a.json) {
      std::printf("{\"outcome\":\"error\",\"status\":%s,\"error\":%s,\"maybeApplied\":%s}\n",
                  jsonString(kvr::statusName(r.status)).c_str(), jsonString(r.error).c_str(),
                  r.maybeApplied ? "true" : "false");
    }
    std::string error = r.error;
    // A retry after an attempt that may have been applied can be refused because of that
    // attempt (e.g. "no member has this id" after a removal that did commit).
    if (r.maybeApplied && error.rfind("outcome unknown", 0) != 0) {
      error = "outcome unknown (an earlier attempt may have been applied; see kvctl member "
              "list); the last attempt: " +
              error;
    }
    std::fprintf(stderr, "kvctl: %s failed: %s\n", what.c_str(), error.c_str());
    return kExitError;
  }
  if (a.json) {
    std::printf("%s\n", membersJson(r).c_str());
  } else if (done.empty()) {
    printMembers(r);
  } else {
    std::printf("%s\n", done.c_str());
  }
  return kExitOk;
}

// Promotes `id`, asking again while the leader answers "the learner lags", until
// `deadline`. Each ask is one admin call with the client's own timeout.
Result promoteWhenCaughtUp(KvClient& client, kvr::NodeId id, uint64_t waitMs) {
  auto start = std::chrono::steady_clock::now();
  for (;;) {
    Result r = client.admin(AdminRequest{AdminOp::MemberPromote, id, "", ""});
    if (r.ok() || r.confError != kvr::ConfChangeError::LearnerLags) return r;
    auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    if (uint64_t(elapsed.count()) >= waitMs) {
      r.error += " (still lagging after " + std::to_string(waitMs) + " ms)";
      return r;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

int memberCommand(const Args& a) {
  const auto& cmd = a.command;
  std::string sub = cmd.size() > 1 ? cmd[1] : "";
  if (cmd[0] == "leader") {
    if (sub != "transfer" || cmd.size() != 3) die("usage: kvctl leader transfer ID");
    kvr::NodeId id = parseNodeId(cmd[2]);
    KvClient client(a.endpoints, a.options);
    Result r = client.admin(AdminRequest{AdminOp::LeaderTransfer, id, "", ""});
    return reportAdmin(a, "leader transfer", r,
                       "node " + std::to_string(id) + " is the leader");
  }
  if (sub == "list") {
    needArgs(cmd, 2, "member list");
    KvClient client(a.endpoints, a.options);
    return reportAdmin(a, "member list", client.admin(AdminRequest{}), "");
  }
  if (sub == "add") {
    needArgs(cmd, 5, "member add ID RAFT_ADDR CLIENT_ADDR [--learner]");
    kvr::NodeId id = parseNodeId(cmd[2]);
    // Without --learner the whole command waits for the new node to catch up: a minute
    // unless --timeout says otherwise; each request keeps the usual 5 s.
    uint64_t waitMs = a.timeoutGiven ? a.options.timeoutMs : 60'000;
    Options options = a.options;
    if (!a.timeoutGiven) options.timeoutMs = 5000;
    KvClient client(a.endpoints, options);
    Result r = client.admin(AdminRequest{AdminOp::MemberAdd, id, cmd[3], cmd[4]});
    std::string added = "added node " + std::to_string(id) + " as a learner (raft " + cmd[3] +
                        ", client " + cmd[4] + ")";
    if (a.learner || !r.ok()) return reportAdmin(a, "member add", r, added);
    std::fprintf(stderr,
                 "kvctl: %s; waiting up to %llu ms for it to catch up, then promoting it "
                 "(start it with kvnode --id %u --join ... if it is not running)\n",
                 added.c_str(), static_cast<unsigned long long>(waitMs), id);
    Result p = promoteWhenCaughtUp(client, id, waitMs);
    if (!p.ok()) {
      p.error += "; node " + std::to_string(id) +
                 " stays a learner: once it runs and has caught up, kvctl member promote " +
                 std::to_string(id);
    }
    return reportAdmin(a, "member add (promote)", p,
                       "added node " + std::to_string(id) + " as a voter");
  }
  if (sub == "promote") {
    needArgs(cmd, 3, "member promote ID");
    kvr::NodeId id = parseNodeId(cmd[2]);
    Options options = a.options;
    KvClient client(a.endpoints, options);
    return reportAdmin(a, "member promote",
                       promoteWhenCaughtUp(client, id, a.options.timeoutMs),
                       "promoted node " + std::to_string(id) + " to voter");
  }
  if (sub == "remove") {
    needArgs(cmd, 3, "member remove ID");
    kvr::NodeId id = parseNodeId(cmd[2]);
    KvClient client(a.endpoints, a.options);
    Result r = client.admin(AdminRequest{AdminOp::MemberRemove, id, "", ""});
    if (!r.ok() && r.maybeApplied && r.confError == kvr::ConfChangeError::UnknownNode) {
      // The retry found no such member: an earlier attempt removed it and its answer was
      // lost (a removed leader hands over before it can answer). What was asked is done
      // if the member list agrees.
      Result list = client.admin(AdminRequest{AdminOp::MemberList, 0, "", ""});
      bool gone = list.ok();
      for (const MemberInfo& m : list.members) gone = gone && m.id != id;
      if (gone) {
        if (a.json) {
          std::printf("%s\n", membersJson(list).c_str());
        } else {
          std::printf("removed node %u (by an earlier attempt whose answer was lost)\n", id);
        }
        return kExitOk;
      }
    }
    return reportAdmin(a, "member remove", r, "removed node " + std::to_string(id));
  }
  die("usage: kvctl member list|add|promote|remove ... (see kvctl --help)");
}

int run(const Args& a) {
  if (a.command[0] == "member" || a.command[0] == "leader") return memberCommand(a);
  if (a.command[0] == "snapshot") {
    return kvctl::snapshotCommand(a.endpoints, a.options, a.json, a.command);
  }
  KvClient client(a.endpoints, a.options);
  const auto& cmd = a.command;
  const std::string& op = cmd[0];
  if (op == "put") {
    needArgs(cmd, 3, "put K V");
    return report(a, op, client.put(cmd[1], readValue(cmd[2])));
  }
  if (op == "get") {
    needArgs(cmd, 2, "get K");
    return report(a, op, client.get(cmd[1]));
  }
  if (op == "del") {
    needArgs(cmd, 2, "del K");
    return report(a, op, client.del(cmd[1]));
  }
  if (op == "cas") {
    if (a.absent) {
      needArgs(cmd, 3, "cas K --absent NEW");
      return report(a, op, client.casAbsent(cmd[1], readValue(cmd[2])));
    }
    needArgs(cmd, 4, "cas K EXPECTED NEW  |  kvctl cas K --absent NEW");
    return report(a, op, client.cas(cmd[1], cmd[2], readValue(cmd[3])));
  }
  if (op == "range") {
    needArgs(cmd, 3, "range FROM TO [--limit N]");
    return report(a, op, client.range(cmd[1], cmd[2], a.limit.value_or(0)));
  }
  if (op == "status") {
    needArgs(cmd, 1, "status");
    return printStatus(a, client.status());
  }
  if (op == "health") {
    needArgs(cmd, 1, "health");
    Health h = client.health();
    if (a.json) {
      std::printf("{\"healthy\":%s,\"leader\":%u,\"message\":%s}\n",
                  h.healthy ? "true" : "false", h.leader, jsonString(h.message).c_str());
    } else if (h.healthy) {
      std::printf("%s\n", h.message.c_str());
    }
    if (!h.healthy) {
      std::fprintf(stderr, "kvctl: unhealthy: %s\n", h.message.c_str());
      return kExitError;
    }
    return kExitOk;
  }
  if (op == "session") {
    needArgs(cmd, 1, "session");
    return report(a, op, client.openSession());
  }
  die("unknown command '" + op + "' (see kvctl --help)");
}

}  // namespace

int main(int argc, char** argv) {
  Args args = parseArgs(argc, argv);
  int code = kExitError;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { code = run(args); })) {
    die(std::string(e->getDescription().cStr()));
  }
  std::fflush(stdout);
  return code;
}
