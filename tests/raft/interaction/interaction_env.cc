#include "tests/raft/interaction/interaction_env.h"

#include <algorithm>

#include <kj/exception.h>

#include "core/text.h"

namespace kvr::test {

namespace {

std::string str(uint64_t v) { return std::to_string(v); }

std::string nodeStr(NodeId id) { return id == kNoNode ? "-" : str(id); }

std::string idTerm(Index i, Term t) { return str(i) + "/t" + str(t); }

std::string voters(const ConfState& c) {
  std::string s;
  for (NodeId v : c.voters) s += (s.empty() ? "" : ",") + str(v);
  return s;
}

std::string indexRange(Index first, Index last) {
  return first == last ? str(first) : str(first) + ".." + str(last);
}

std::string describe(const kj::Exception& e) {
  return std::string("raft panic: ") + e.getDescription().cStr();
}

}  // namespace

// ---------------------------------------------------------------- formatting

std::string InteractionEnv::fmtEntry(const Entry& e) {
  std::string s = idTerm(e.index, e.term);
  if (e.kind == EntryKind::Noop) return s + " noop";
  if (!e.data.empty()) s += " " + text::quoted(e.data, text::Quote::Human);
  return s;
}

std::string InteractionEnv::fmtEntries(const std::vector<Entry>& es) {
  std::string s = "[";
  for (size_t i = 0; i < es.size(); ++i) s += (i ? ", " : "") + fmtEntry(es[i]);
  return s + "]";
}

std::string InteractionEnv::fmtHardState(const HardState& hs) {
  return "hardState t" + str(hs.term) + " vote=" + nodeStr(hs.vote) +
         " commit=" + str(hs.commit);
}

std::string InteractionEnv::fmtMessage(const Message& m) {
  std::string s = str(m.from) + "->" + str(m.to) + " " + msgTypeName(m.type) + " t" +
                  str(m.term);
  switch (m.type) {
    case MsgType::PreVote:
    case MsgType::Vote:
      s += " last=" + idTerm(m.index, m.logTerm);
      if (m.context == kCampaignTransfer) {
        s += " transfer";
      } else if (m.context != 0) {
        s += " ctx=" + str(m.context);
      }
      break;
    case MsgType::PreVoteResp:
    case MsgType::VoteResp:
      if (m.reject) s += " reject";
      break;
    case MsgType::Append:
      s += " prev=" + idTerm(m.index, m.logTerm);
      if (!m.entries.empty()) s += " entries=" + fmtEntries(m.entries);
      s += " commit=" + str(m.commit);
      break;
    case MsgType::AppendResp:
      if (m.reject) {
        s += " reject index=" + str(m.index) + " hint=" + idTerm(m.rejectHint, m.logTerm);
      } else {
        s += " index=" + str(m.index);
      }
      break;
    case MsgType::Heartbeat:
      s += " commit=" + str(m.commit);
      if (m.context != 0) s += " read=" + str(m.context);
      break;
    case MsgType::HeartbeatResp:
      if (m.context != 0) s += " read=" + str(m.context);
      break;
    case MsgType::Snapshot:
      s += " snap=" + idTerm(m.snap.index, m.snap.term) + " voters=" + voters(m.snap.conf) +
           " bytes=" + str(m.snapOffset) + "+" + str(m.snapChunk.size()) + "/" +
           str(m.snapSize);
      if (m.snapDone) s += " done";
      break;
    case MsgType::SnapshotResp:
      s += " snap=" + str(m.index) + " offset=" + str(m.snapOffset);
      if (m.reject) s += " reject";
      break;
    case MsgType::TimeoutNow: break;
    case MsgType::ReadIndex: s += " ctx=" + str(m.context); break;
    case MsgType::ReadIndexResp:
      s += " ctx=" + str(m.context);
      s += m.reject ? std::string(" reject") : " index=" + str(m.index);
      break;
    case MsgType::TermPoll:
    case MsgType::TermPollResp: s += " ctx=" + str(m.context); break;
  }
  return s;
}

std::string InteractionEnv::fmtLogTerms(const std::vector<Entry>& log, Index snapIndex,
                                        Term snapTerm, bool hasSnap) const {
  std::string s;
  if (hasSnap) s += "snap=" + idTerm(snapIndex, snapTerm) + " ";
  s += "log=[";
  size_t i = 0;
  bool first = true;
  while (i < log.size()) {
    size_t j = i;
    while (j + 1 < log.size() && log[j + 1].term == log[i].term) ++j;
    s += (first ? "" : " ") + indexRange(log[i].index, log[j].index) + "/t" + str(log[i].term);
    first = false;
    i = j + 1;
  }
  return s + "]";
}

// ---------------------------------------------------------------- helpers

InteractionEnv::Node& InteractionEnv::node(NodeId id) {
  auto it = nodes_.find(id);
  if (it == nodes_.end()) throw Error{"no node " + str(id)};
  return it->second;
}

InteractionEnv::Node& InteractionEnv::upNode(NodeId id) {
  Node& n = node(id);
  if (n.down) throw Error{"node " + str(id) + " is down"};
  return n;
}

uint64_t InteractionEnv::parseNumber(const std::string& s, const char* what) {
  uint64_t v = 0;
  if (text::parseUnsigned(s, &v) != text::NumberError::None) {
    throw Error{std::string("bad ") + what + " '" + s + "'"};
  }
  return v;
}

NodeId InteractionEnv::parseId(const std::string& s) {
  uint64_t v = parseNumber(s, "node id");
  node(static_cast<NodeId>(v));
  return static_cast<NodeId>(v);
}

std::vector<NodeId> InteractionEnv::parseIds(const dd::Command& c, bool allIfNone) {
  std::vector<NodeId> ids;
  for (auto& p : c.positional) ids.push_back(parseId(p));
  if (ids.empty() && allIfNone) {
    for (auto& [id, n] : nodes_) ids.push_back(id);
  }
  if (ids.empty()) throw Error{c.name + " needs a node id"};
  return ids;
}

void InteractionEnv::start(Node& n) {
  RaftConfig cfg = config_;
  cfg.id = n.id;
  Rng rng(seed_ * 1000003 + n.id * 1009 + n.restarts * 7919);
  n.raft = std::make_unique<Raft>(cfg, rng, conf_, n.durable);
  n.down = false;
  n.unsynced.clear();
  n.shownRole = n.raft->role();
  n.shownTerm = n.raft->term();
  n.shownLeader = n.raft->leader();
  resetStateMachine(n);
}

void InteractionEnv::resetStateMachine(Node& n) {
  const Snapshot& s = n.durable.snapshot;
  n.smBase = s.data ? *s.data : "";
  n.smBaseIndex = s.meta.index;
  n.smApplied.clear();
}

std::string InteractionEnv::stateMachineAt(const Node& n, Index index) const {
  std::string s = n.smBase;
  for (auto& [i, data] : n.smApplied) {
    if (i > index) break;
    s += (s.empty() ? "" : ",") + data;
  }
  return s;
}

std::string InteractionEnv::statusLine(Node& n) {
  if (n.down) return str(n.id) + ": down";
  Raft& r = *n.raft;
  std::vector<Entry> log;
  for (Index i = r.firstIndex(); i <= r.lastIndex(); ++i) log.push_back(*r.entryAt(i));
  std::string s = str(n.id) + ": " + roleName(r.role()) + " t" + str(r.term()) +
                  " vote=" + nodeStr(r.vote()) + " leader=" + nodeStr(r.leader()) +
                  " commit=" + str(r.commitIndex()) + " applied=" + str(r.appliedIndex()) +
                  " stable=" + str(r.stableIndex()) + " " +
                  fmtLogTerms(log, r.snapshotIndex(), r.snapshot().meta.term,
                              r.snapshotIndex() > 0);
  if (r.transferTarget() != kNoNode) s += " transfer=" + str(r.transferTarget());
  return s;
}

void InteractionEnv::noteChanges(Node& n, const std::string& indent, std::string& out) {
  Raft& r = *n.raft;
  NodeId leader = r.role() == Role::Follower ? r.leader() : kNoNode;
  if (r.role() == n.shownRole && r.term() == n.shownTerm && leader == n.shownLeader) return;
  n.shownRole = r.role();
  n.shownTerm = r.term();
  n.shownLeader = leader;
  out += indent + str(n.id) + " is now " + roleName(r.role()) + " t" + str(r.term());
  if (r.role() == Role::Follower) out += " leader=" + nodeStr(leader);
  out += "\n";
}

bool InteractionEnv::linkCut(NodeId from, NodeId to) const {
  if (partition_.empty()) return false;
  auto group = [&](NodeId id) {
    auto it = partition_.find(id);
    return it == partition_.end() ? -1 : it->second;  // unlisted nodes: one more group
  };
  return group(from) != group(to);
}

// ---------------------------------------------------------------- steps

void InteractionEnv::processReady(Node& n, std::string& out) {
  Raft& r = *n.raft;
  if (!r.hasReady()) {
    out += str(n.id) + " ready: nothing\n";
    return;
  }
  Ready rd = r.takeReady();
  out += str(n.id) + " ready\n";
  if (rd.hardState) out += "  " + fmtHardState(*rd.hardState) + "\n";
  if (rd.snapshot) {
    const Snapshot& s = *rd.snapshot;
    out += "  snapshot " + idTerm(s.meta.index, s.meta.term) +
           " voters=" + voters(s.meta.conf) +
           " data=" + text::quoted(s.data ? *s.data : "", text::Quote::Human) + "\n";
  }
  if (!rd.entries.empty()) out += "  entries " + fmtEntries(rd.entries) + "\n";
  for (auto& m : rd.messages) out += "  now " + fmtMessage(m) + "\n";
  for (auto& m : rd.afterPersist) out += "  after-persist " + fmtMessage(m) + "\n";
  if (!rd.committed.empty()) out += "  apply " + fmtEntries(rd.committed) + "\n";
  for (auto& rs : rd.readStates) {
    out += "  read ctx=" + str(rs.context) +
           (rs.failed ? std::string(" failed") : " index=" + str(rs.index)) + "\n";
  }
  // The host: messages leave now, writes and what waits for them go to storage.
  for (auto& m : rd.messages) network_.push_back(std::move(m));
  if (rd.mustPersist() || !rd.afterPersist.empty()) {
    Batch b;
    b.hardState = rd.hardState;
    b.snapshot = rd.snapshot;
    b.entries = std::move(rd.entries);
    b.afterPersist = std::move(rd.afterPersist);
    n.unsynced.push_back(std::move(b));
  }
  if (rd.snapshot) {
    n.smBase = rd.snapshot->data ? *rd.snapshot->data : "";
    n.smBaseIndex = rd.snapshot->meta.index;
    n.smApplied.clear();
  }
  if (!rd.committed.empty()) {
    for (auto& e : rd.committed) {
      if (e.kind == EntryKind::Command && !e.data.empty())
        n.smApplied.emplace_back(e.index, e.data);
    }
    r.applied(rd.committed.back().index);
  }
}

void InteractionEnv::persist(Node& n, std::string& out) {
  if (n.unsynced.empty()) {
    out += str(n.id) + " persist: nothing unsynced\n";
    return;
  }
  std::optional<HardState> hs;
  std::optional<SnapshotMeta> snap;
  std::optional<Entry> lastEntry;
  Index firstEntry = 0;
  std::vector<Message> release;
  for (Batch& b : n.unsynced) {
    RecoveredState& d = n.durable;
    if (b.snapshot) {
      d.snapshot = *b.snapshot;
      d.entries.clear();
      snap = b.snapshot->meta;
      lastEntry.reset();
      firstEntry = 0;
    }
    if (!b.entries.empty()) {
      Index first = b.entries.front().index;
      while (!d.entries.empty() && d.entries.back().index >= first) d.entries.pop_back();
      d.entries.insert(d.entries.end(), b.entries.begin(), b.entries.end());
      if (firstEntry == 0 || first < firstEntry) firstEntry = first;
      lastEntry = b.entries.back();
    }
    if (b.hardState) {
      d.hardState = *b.hardState;
      hs = b.hardState;
    }
    for (auto& m : b.afterPersist) release.push_back(std::move(m));
  }
  n.unsynced.clear();
  std::string what;
  if (hs) what += fmtHardState(*hs);
  if (snap)
    what += (what.empty() ? "" : "; ") + std::string("snapshot ") +
            idTerm(snap->index, snap->term);
  if (lastEntry) {
    what += (what.empty() ? "" : "; ") + std::string("entries ") +
            indexRange(firstEntry, lastEntry->index);
  }
  out += str(n.id) + " persist: " + (what.empty() ? "no writes" : what) + "\n";
  if (lastEntry) n.raft->persisted(lastEntry->index, lastEntry->term);
  if (hs) n.raft->persistedHardState(*hs);
  for (auto& m : release) {
    out += "  send " + fmtMessage(m) + "\n";
    network_.push_back(std::move(m));
  }
}

size_t InteractionEnv::deliver(const std::function<bool(const Message&)>& select,
                               const std::set<NodeId>& dropTo, std::string& out) {
  std::deque<Message> queue = std::move(network_);
  network_.clear();
  std::deque<Message> keep;
  size_t moved = 0;
  for (auto& m : queue) {
    if (!select(m)) {
      keep.push_back(std::move(m));
      continue;
    }
    ++moved;
    std::string line = fmtMessage(m);
    std::string reason;
    auto it = nodes_.find(m.to);
    if (dropTo.count(m.to)) {
      reason = "-";
    } else if (linkCut(m.from, m.to)) {
      reason = "partition";
    } else if (it == nodes_.end() || it->second.down) {
      reason = str(m.to) + " down";
    }
    if (!reason.empty()) {
      out += line + (reason == "-" ? std::string(" DROPPED") : " DROPPED (" + reason + ")") +
             "\n";
      continue;
    }
    out += line + "\n";
    Node& to = it->second;
    uint64_t malformed = to.raft->droppedMessages();
    try {
      to.raft->step(std::move(m));
    } catch (const kj::Exception& e) {
      out += "  " + describe(e) + "\n";
    }
    if (to.raft->droppedMessages() != malformed)
      out += "  " + str(to.id) + " dropped it as malformed\n";
    noteChanges(to, "  ", out);
  }
  // Nothing joins the network while messages are stepped: replies wait in the Ready.
  network_ = std::move(keep);
  return moved;
}

// ---------------------------------------------------------------- commands

std::string InteractionEnv::handle(const dd::Command& c) {
  try {
    if (c.name == "add-nodes") return cmdAddNodes(c);
    if (nodes_.empty()) throw Error{"no nodes yet: start with add-nodes"};
    if (c.name == "set-state") return cmdSetState(c);
    if (c.name == "campaign") return cmdCampaign(c);
    if (c.name == "propose") return cmdPropose(c);
    if (c.name == "tick") return cmdTick(c, false);
    if (c.name == "tick-all") return cmdTick(c, true);
    if (c.name == "deliver-msgs") return cmdDeliver(c);
    if (c.name == "msgs") return cmdMsgs(c);
    if (c.name == "process-ready") return cmdProcessReady(c);
    if (c.name == "persist") return cmdPersist(c);
    if (c.name == "stabilize") return cmdStabilize(c);
    if (c.name == "partition") return cmdPartition(c);
    if (c.name == "heal") {
      partition_.clear();
      return "ok";
    }
    if (c.name == "crash") return cmdCrash(c);
    if (c.name == "restart") return cmdRestart(c);
    if (c.name == "read-index") return cmdReadIndex(c);
    if (c.name == "transfer-leader") return cmdTransfer(c);
    if (c.name == "status") return cmdStatus(c);
    if (c.name == "log") return cmdLog(c);
    if (c.name == "storage") return cmdStorage(c);
    if (c.name == "state") return cmdState(c);
    if (c.name == "compact") return cmdCompact(c);
    throw Error{"unknown command '" + c.name + "'"};
  } catch (const Error& e) {
    return "error: " + e.what;
  } catch (const kj::Exception& e) {
    return describe(e);
  }
}

std::string InteractionEnv::cmdAddNodes(const dd::Command& c) {
  if (!nodes_.empty()) throw Error{"add-nodes: the cluster already exists"};
  if (c.positional.size() != 1) throw Error{"usage: add-nodes N [option=value...]"};
  uint64_t count = parseNumber(c.positional[0], "node count");
  if (count < 1 || count > limits::kMaxNodes) throw Error{"add-nodes: 1..7 nodes"};
  RaftConfig cfg;
  auto boolean = [&](const std::string& v) {
    if (v == "true") return true;
    if (v == "false") return false;
    throw Error{"bad boolean '" + v + "'"};
  };
  for (auto& [k, v] : c.options) {
    if (k == "prevote") {
      cfg.preVote = boolean(v);
    } else if (k == "checkquorum") {
      cfg.checkQuorum = boolean(v);
    } else if (k == "election") {
      cfg.electionTicks = static_cast<uint32_t>(parseNumber(v, k.c_str()));
    } else if (k == "heartbeat") {
      cfg.heartbeatTicks = static_cast<uint32_t>(parseNumber(v, k.c_str()));
    } else if (k == "max-append-bytes") {
      cfg.maxAppendBytes = parseNumber(v, k.c_str());
    } else if (k == "inflight") {
      cfg.maxInflight = static_cast<uint32_t>(parseNumber(v, k.c_str()));
    } else if (k == "snapshot-chunk") {
      cfg.snapshotChunkBytes = parseNumber(v, k.c_str());
    } else if (k == "keep-entries") {
      cfg.compactionKeepEntries = parseNumber(v, k.c_str());
    } else if (k == "seed") {
      seed_ = parseNumber(v, k.c_str());
    } else {
      throw Error{"add-nodes: unknown option '" + k + "'"};
    }
  }
  config_ = cfg;
  conf_ = ConfState{};
  for (NodeId id = 1; id <= count; ++id) conf_.voters.push_back(id);
  std::string out;
  for (NodeId id = 1; id <= count; ++id) {
    Node& n = nodes_[id];
    n.id = id;
    try {
      start(n);
    } catch (...) {
      nodes_.clear();
      throw;
    }
    out += statusLine(n) + "\n";
  }
  return out;
}

std::string InteractionEnv::cmdSetState(const dd::Command& c) {
  if (c.positional.size() != 1)
    throw Error{"usage: set-state ID [term=T] [vote=V] [commit=C] [log=T1,T2,...]"};
  Node& n = node(parseId(c.positional[0]));
  RecoveredState r;
  if (auto* log = c.option("log"); log && !log->empty()) {
    Index i = 1;
    for (auto& t : dd::split(*log, ',')) {
      r.entries.push_back(Entry{parseNumber(t, "term"), i++, EntryKind::Command, {}});
    }
  }
  r.hardState.term = r.entries.empty() ? 0 : r.entries.back().term;
  if (auto* v = c.option("term")) r.hardState.term = parseNumber(*v, "term");
  if (auto* v = c.option("vote"))
    r.hardState.vote = static_cast<NodeId>(parseNumber(*v, "vote"));
  if (auto* v = c.option("commit")) r.hardState.commit = parseNumber(*v, "commit");
  n.durable = std::move(r);
  // Nothing in flight belongs to the old incarnation any more.
  std::erase_if(network_, [&](const Message& m) { return m.from == n.id || m.to == n.id; });
  start(n);
  return statusLine(n);
}

std::string InteractionEnv::cmdCampaign(const dd::Command& c) {
  if (c.positional.size() != 1) throw Error{"usage: campaign ID"};
  Node& n = upNode(parseId(c.positional[0]));
  const Role role = n.raft->role();
  const Term term = n.raft->term();
  if (role != Role::Follower && role != Role::Candidate) {
    throw Error{"campaign: node is a " + std::string(roleName(role)) + " (tick it instead)"};
  }
  std::string out;
  // The core has no "campaign now" input: tick until the election timer fires (a
  // follower changes role, a candidate starts the next term).
  auto fired = [&] { return n.raft->role() != role || n.raft->term() != term; };
  const uint32_t limit = 2 * config_.electionTicks + 1;
  for (uint32_t i = 0; i < limit && !fired(); ++i) {
    n.raft->tick();
    noteChanges(n, "", out);
  }
  if (!fired()) throw Error{"campaign: no election after " + str(limit) + " ticks"};
  return out;
}

std::string InteractionEnv::cmdPropose(const dd::Command& c) {
  if (c.positional.size() != 2) throw Error{"usage: propose ID DATA"};
  Node& n = upNode(parseId(c.positional[0]));
  Index at = 0;
  switch (n.raft->propose(c.positional[1], &at)) {
    case ProposeError::None: return "index " + str(at);
    case ProposeError::NotLeader: return "refused: not leader";
    case ProposeError::TransferInProgress: return "refused: transfer in progress";
    case ProposeError::Busy: return "refused: busy";
    case ProposeError::TooLarge: return "refused: too large";
  }
  return "refused: ?";
}

std::string InteractionEnv::cmdTick(const dd::Command& c, bool all) {
  std::vector<NodeId> ids;
  uint64_t times = 1;
  if (all) {
    if (c.positional.size() > 1) throw Error{"usage: tick-all [N]"};
    if (!c.positional.empty()) times = parseNumber(c.positional[0], "tick count");
    for (auto& [id, n] : nodes_) {
      if (!n.down) ids.push_back(id);
    }
  } else {
    if (c.positional.empty() || c.positional.size() > 2) throw Error{"usage: tick ID [N]"};
    ids.push_back(upNode(parseId(c.positional[0])).id);
    if (c.positional.size() == 2) times = parseNumber(c.positional[1], "tick count");
  }
  std::string out;
  for (uint64_t t = 0; t < times; ++t) {
    for (NodeId id : ids) {
      Node& n = node(id);
      n.raft->tick();
      noteChanges(n, "", out);
    }
  }
  return out;
}

std::string InteractionEnv::cmdDeliver(const dd::Command& c) {
  std::set<NodeId> to;
  for (auto& p : c.positional) to.insert(parseId(p));
  std::set<NodeId> dropTo, from;
  std::set<std::string> types;
  for (auto& [k, v] : c.options) {
    if (k == "drop") {
      for (auto& s : dd::split(v, ',')) dropTo.insert(parseId(s));
    } else if (k == "from") {
      for (auto& s : dd::split(v, ',')) from.insert(parseId(s));
    } else if (k == "type") {
      for (auto& s : dd::split(v, ',')) types.insert(s);
    } else {
      throw Error{"deliver-msgs: unknown option '" + k + "'"};
    }
  }
  std::string out;
  size_t n = deliver(
      [&](const Message& m) {
        if (!to.empty() && !to.count(m.to)) return false;
        if (!from.empty() && !from.count(m.from)) return false;
        if (!types.empty() && !types.count(msgTypeName(m.type))) return false;
        return true;
      },
      dropTo, out);
  if (n == 0) return "no messages";
  return out;
}

std::string InteractionEnv::cmdMsgs(const dd::Command& c) {
  std::set<NodeId> to;
  for (auto& p : c.positional) to.insert(parseId(p));
  std::string out;
  for (auto& m : network_) {
    if (to.empty() || to.count(m.to)) out += fmtMessage(m) + "\n";
  }
  return out.empty() ? "no messages" : out;
}

std::string InteractionEnv::cmdProcessReady(const dd::Command& c) {
  std::string out;
  for (NodeId id : parseIds(c, false)) processReady(upNode(id), out);
  return out;
}

std::string InteractionEnv::cmdPersist(const dd::Command& c) {
  std::string out;
  for (NodeId id : parseIds(c, false)) persist(upNode(id), out);
  return out;
}

std::string InteractionEnv::cmdStabilize(const dd::Command& c) {
  std::vector<NodeId> ids = parseIds(c, true);
  std::set<NodeId> set(ids.begin(), ids.end());
  std::string out;
  for (int round = 0; round < 1000; ++round) {
    bool moved = false;
    for (NodeId id : ids) {
      Node& n = node(id);
      if (n.down) continue;
      if (n.raft->hasReady()) {
        processReady(n, out);
        moved = true;
      }
      if (!n.unsynced.empty()) {
        persist(n, out);
        moved = true;
      }
    }
    if (deliver([&](const Message& m) { return set.count(m.to) > 0; }, {}, out) > 0)
      moved = true;
    if (!moved) return out;
  }
  return out + "stabilize: still busy after 1000 rounds\n";
}

std::string InteractionEnv::cmdPartition(const dd::Command& c) {
  if (c.positional.empty()) throw Error{"usage: partition A,B C,D ..."};
  std::map<NodeId, int> groups;
  int g = 0;
  std::string out = "groups";
  for (auto& p : c.positional) {
    out += g == 0 ? " " : " | ";
    std::string list;
    for (auto& s : dd::split(p, ',')) {
      NodeId id = parseId(s);
      if (groups.count(id)) throw Error{"partition: node " + str(id) + " listed twice"};
      groups[id] = g;
      list += (list.empty() ? "" : ",") + str(id);
    }
    out += list;
    ++g;
  }
  std::string rest;
  for (auto& [id, n] : nodes_) {
    if (!groups.count(id)) rest += (rest.empty() ? "" : ",") + str(id);
  }
  if (!rest.empty()) out += " | " + rest;
  partition_ = std::move(groups);
  return out;
}

std::string InteractionEnv::cmdCrash(const dd::Command& c) {
  if (c.positional.size() != 1) throw Error{"usage: crash ID"};
  Node& n = upNode(parseId(c.positional[0]));
  std::string out = str(n.id) + " crashed\n";
  for (Batch& b : n.unsynced) {
    std::string what;
    if (b.hardState) what += fmtHardState(*b.hardState);
    if (b.snapshot) {
      what += (what.empty() ? "" : "; ") + std::string("snapshot ") +
              idTerm(b.snapshot->meta.index, b.snapshot->meta.term);
    }
    if (!b.entries.empty()) {
      what += (what.empty() ? "" : "; ") + std::string("entries ") +
              indexRange(b.entries.front().index, b.entries.back().index);
    }
    if (!what.empty()) out += "  lost unsynced " + what + "\n";
    for (auto& m : b.afterPersist) out += "  lost after-persist " + fmtMessage(m) + "\n";
  }
  n.unsynced.clear();
  std::deque<Message> keep;
  for (auto& m : network_) {
    if (m.from == n.id || m.to == n.id) {
      out += "  lost queued " + fmtMessage(m) + "\n";
    } else {
      keep.push_back(std::move(m));
    }
  }
  network_ = std::move(keep);
  n.down = true;
  return out;
}

std::string InteractionEnv::cmdRestart(const dd::Command& c) {
  if (c.positional.size() != 1) throw Error{"usage: restart ID"};
  Node& n = node(parseId(c.positional[0]));
  if (!n.down) throw Error{"restart: node " + str(n.id) + " is up (crash it first)"};
  ++n.restarts;
  start(n);
  return statusLine(n);
}

std::string InteractionEnv::cmdReadIndex(const dd::Command& c) {
  if (c.positional.size() != 2) throw Error{"usage: read-index ID CTX"};
  Node& n = upNode(parseId(c.positional[0]));
  n.raft->readIndex(parseNumber(c.positional[1], "read context"));
  return "ok";
}

std::string InteractionEnv::cmdTransfer(const dd::Command& c) {
  if (c.positional.size() != 2) throw Error{"usage: transfer-leader FROM TO"};
  Node& n = upNode(parseId(c.positional[0]));
  NodeId target = parseId(c.positional[1]);
  return n.raft->transferLeadership(target) ? "ok" : "refused";
}

std::string InteractionEnv::cmdStatus(const dd::Command& c) {
  std::string out;
  for (NodeId id : parseIds(c, true)) out += statusLine(node(id)) + "\n";
  return out;
}

std::string InteractionEnv::cmdLog(const dd::Command& c) {
  std::string out;
  for (NodeId id : parseIds(c, true)) {
    Node& n = upNode(id);
    Raft& r = *n.raft;
    out += str(id) + " log: first=" + str(r.firstIndex()) + " last=" + str(r.lastIndex()) +
           " commit=" + str(r.commitIndex()) + " stable=" + str(r.stableIndex());
    if (r.snapshotIndex() > 0)
      out += " snap=" + idTerm(r.snapshotIndex(), r.snapshot().meta.term);
    out += "\n";
    for (Index i = r.firstIndex(); i <= r.lastIndex(); ++i)
      out += "  " + fmtEntry(*r.entryAt(i)) + "\n";
  }
  return out;
}

std::string InteractionEnv::cmdStorage(const dd::Command& c) {
  std::string out;
  for (NodeId id : parseIds(c, true)) {
    Node& n = node(id);
    const RecoveredState& d = n.durable;
    out += str(id) + " storage: " + fmtHardState(d.hardState) + " " +
           fmtLogTerms(d.entries, d.snapshot.meta.index, d.snapshot.meta.term,
                       d.snapshot.meta.index > 0) +
           " unsynced=" + str(n.unsynced.size()) + "\n";
  }
  return out;
}

std::string InteractionEnv::cmdState(const dd::Command& c) {
  std::string out;
  for (NodeId id : parseIds(c, true)) {
    Node& n = upNode(id);
    out += str(id) + " state: applied=" + str(n.raft->appliedIndex()) + " " +
           text::quoted(stateMachineAt(n, n.raft->appliedIndex()), text::Quote::Human) + "\n";
  }
  return out;
}

std::string InteractionEnv::cmdCompact(const dd::Command& c) {
  if (c.positional.size() != 2) throw Error{"usage: compact ID INDEX"};
  Node& n = upNode(parseId(c.positional[0]));
  Raft& r = *n.raft;
  Index at = parseNumber(c.positional[1], "index");
  if (at > r.appliedIndex())
    throw Error{"compact: index beyond applied " + str(r.appliedIndex())};
  auto term = r.termAt(at);
  if (!term) throw Error{"compact: term of index " + str(at) + " unknown"};
  Snapshot snap;
  snap.meta.index = at;
  snap.meta.term = *term;
  snap.meta.conf = r.conf();
  snap.data = std::make_shared<const std::string>(stateMachineAt(n, at));
  r.compacted(snap);
  auto& log = n.durable.entries;
  log.erase(log.begin(), std::find_if(log.begin(), log.end(),
                                      [at](const Entry& e) { return e.index > at; }));
  n.durable.snapshot = std::move(snap);
  return str(n.id) + " compacted: snap=" + idTerm(at, *term) +
         " data=" + text::quoted(*n.durable.snapshot.data, text::Quote::Human) +
         " first=" + str(r.firstIndex());
}

}  // namespace kvr::test
